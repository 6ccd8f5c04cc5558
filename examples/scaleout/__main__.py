"""``python -m examples.scaleout``: one Redis and two uvicorn workers of one app, on loopback.

Starts ``redis-server`` on a free loopback port with no persistence (unless
``--redis-url`` names one to use), then two workers of ``examples.scaleout.app`` on
``--port`` and ``--port + 1`` (8001 and 8002 by default) sharing it through
``WS_REDIS_URL`` and one random ``WS_JWT_SECRET``. Open both pages and chat across
processes. Ctrl-C (or ``--seconds``) stops every process it started, by PID. If one of
them dies, the others are stopped too.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger("examples.scaleout")

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {limit:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the PID, SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` (no persistence) on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    port = _free_port()
    process = subprocess.Popen(
        [
            *(binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"),
            *("--dir", str(workdir), "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process, 15)
        logger.info("redis-server pid %d on %s:%d", process.pid, HOST, port)
        yield f"redis://{HOST}:{port}/0"
    finally:
        _stop(process)


def start_worker(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``tempest-ws run examples.scaleout.app:create_app --factory`` on ``port`` (the safe
    server options from the worker's ``WS_*`` settings)."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "tempest_ws.cli", "run"),
            *("examples.scaleout.app:create_app", "--factory"),
            *("--host", HOST, "--port", str(port), "--log-level", "warning"),
        ],
        cwd=ROOT,
        env={**os.environ, **env},
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children like Ctrl-C does


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.scaleout", description=__doc__)
    parser.add_argument("--port", type=int, default=8001, help="first worker's port")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Start Redis and two workers; stop them all on Ctrl-C, SIGTERM or ``--seconds``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)
    workers: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scaleout-")))
        url = args.redis_url or stack.enter_context(redis_server(workdir))
        env = {
            "WS_REDIS_URL": url,
            "WS_JWT_SECRET": secrets.token_urlsafe(32),
            "WS_REDIS_CHANNEL_PREFIX": f"scaleout-{secrets.token_hex(4)}",
        }
        try:
            for port in (args.port, args.port + 1):
                workers.append(start_worker(port, env))
            for port, worker in zip((args.port, args.port + 1), workers, strict=True):
                _wait_for_port(port, worker, 60)
                logger.info("worker pid %d: http://%s:%d/", worker.pid, HOST, port)
            deadline = time.monotonic() + args.seconds if args.seconds else None
            while deadline is None or time.monotonic() < deadline:
                if any(worker.poll() is not None for worker in workers):
                    logger.error("a worker exited; stopping the others")
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            for worker in workers:
                _stop(worker)
            logger.info("stopped")


if __name__ == "__main__":
    main()
