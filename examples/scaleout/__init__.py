"""Two uvicorn workers and one Redis, started by one command: ``python -m examples.scaleout``."""
