"""Child processes driven by JSON lines, and what ``/proc`` says about them.

Every child is started here and stopped here by its PID: a polite ``quit`` first, then
SIGTERM, then SIGKILL, each with a deadline. Reads never block past their timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class ChildTimeout(Exception):
    """The child did not answer within the timeout."""


class Child:
    """A ``python -m module ...`` child speaking one JSON object per line."""

    def __init__(
        self,
        module: str,
        *args: str,
        ready_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.pid = self.proc.pid
        self._buf = b""
        self.hello = self.read(ready_timeout)

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildTimeout(f"pid {self.pid}: no answer within {timeout:.1f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ChildTimeout(f"pid {self.pid} exited ({self.proc.poll()})")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.read(timeout)

    def stop(self, grace: float = 10.0) -> None:
        """Quit politely, then SIGTERM, then SIGKILL this child's PID; always reaped."""
        if self.proc.poll() is None:
            with contextlib.suppress(ChildTimeout, OSError, ValueError):
                self.request("quit", timeout=grace)
        for sig, wait in ((None, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None and self.proc.poll() is None:
                os.kill(self.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (from ``/proc/PID/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class CpuMeter:
    """CPU seconds used by some PIDs between ``start()`` and ``stop()``, with wall time."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = [cpu_seconds(p) for p in self.pids]

    def stop(self) -> tuple[float, list[float]]:
        wall = time.monotonic() - self.t0
        return wall, [cpu_seconds(p) - c for p, c in zip(self.pids, self.c0, strict=True)]


def machine_note() -> dict[str, Any]:
    """What the run ran on: CPU model, cores, load, versions."""
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in ("uvicorn", "websockets", "fastapi", "starlette", "uvloop", "orjson"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    commit = ""
    dirty = False
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "tempest_ws"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg()[0],
        "versions": versions,
        "commit": commit + ("+dirty" if dirty else ""),
    }


class RedisProcess:
    """A throwaway ``redis-server`` on a free loopback port, stopped by its PID."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is None:
                os.kill(self.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


WRITE_SYSCALLS = ("write", "writev", "send", "sendto", "sendmsg", "sendmmsg")


class SyscallCounter:
    """Counts a process's write-type system calls with ``strace -c`` while it runs.

    ``/proc/PID/io``'s ``syscw`` counts ``write``/``writev`` but not ``send*``, which some
    servers use, so the count comes from ``strace`` (attached with ptrace: the process
    runs much slower meanwhile, so nothing else is measured during a count). ``strace``
    is started and stopped by its PID.
    """

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        command = ["strace", "-f", "-c", "-e", "trace=" + ",".join(WRITE_SYSCALLS)]
        self.proc = subprocess.Popen(
            [*command, "-o", str(out), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        fd, seen, deadline = self.proc.stderr.fileno(), b"", time.monotonic() + 10
        while b"attached" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                seen += chunk
        if b"attached" not in seen:
            self.stop()
            raise RuntimeError(f"strace did not attach: {seen.decode(errors='replace')}")

    def stop(self) -> int:
        """Detach and return the number of write-type calls seen."""
        for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is None:
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        calls = 0
        with contextlib.suppress(OSError):
            for line in self.out.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 5 and fields[-1] in WRITE_SYSCALLS and fields[3].isdigit():
                    calls += int(fields[3])
        return calls
