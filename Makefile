.PHONY: demo test bench lint docs lock compat

demo:  ## the chat demo on http://127.0.0.1:8000 (same as ./scripts/demo.sh)
	scripts/demo.sh

test:  ## the whole suite: ruff, mypy --strict, mkdocs --strict, pytest (installs what it needs)
	scripts/test.sh

bench:  ## the benchmark suite, quick mode
	scripts/bootstrap.sh yes && .venv/bin/python -m bench --quick

docs:  ## serve the docs on http://127.0.0.1:8001
	scripts/bootstrap.sh no && .venv/bin/mkdocs serve -a 127.0.0.1:8001

lock:  ## refresh requirements/dev.lock: every dev dependency at its newest release, hashed
	scripts/lock.sh

compat:  ## mypy and the tests at the declared dependency floors and at the newest releases
	scripts/compat.sh
