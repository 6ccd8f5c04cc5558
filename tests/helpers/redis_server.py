"""Real ``redis-server`` processes for tests: one server, or a 3-node Redis Cluster.

Each server listens on a free loopback port with no persistence (``--save ""
--appendonly no``), is waited for until it answers ``PING``, and is stopped by its PID
(SIGTERM, then SIGKILL if it lingers). `RedisServer.restart()` brings it back on the
same port, empty, as after a crash. Callers use `tests.helpers.support.require_tool()` first
so a missing binary fails loudly under the test command and in CI.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.helpers.support import require_tool

HOST = "127.0.0.1"
START_TIMEOUT = 15.0


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (and, ``with_bus``, port + 10000 free too, for Cluster)."""
    for _ in range(200):
        if with_bus:
            port = random.randint(20_000, 40_000)
        else:
            with socket.socket() as probe:
                probe.bind((HOST, 0))
                port = int(probe.getsockname()[1])
        ports = (port, port + 10_000) if with_bus else (port,)
        try:
            with contextlib.ExitStack() as stack:
                for candidate in ports:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((HOST, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


class RedisServer:
    """One ``redis-server`` child process on a loopback port."""

    def __init__(self, *, cluster: bool = False, workdir: Path | None = None) -> None:
        self.binary = require_tool("redis-server")
        self.cluster = cluster
        self.port = free_port(with_bus=cluster)
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tempest-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def logfile(self) -> Path:
        return self.workdir / f"redis-{self.port}.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _command(self) -> list[str]:
        command = [
            self.binary,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.logfile),
        ]
        if self.cluster:
            command += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                "5000",
                "--cluster-announce-ip",
                HOST,
            ]
        return command

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.logfile.read_text() if self.logfile.exists() else ""
                raise RuntimeError(f"redis-server exited at start: {log.strip()[-500:]}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer in time")

    def ping(self) -> bool:
        """Whether the server answers PING now."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def client(self) -> redis.Redis:
        """A short-lived synchronous client (for fault injection and checks)."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, SIGKILL after 5 s)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port, empty (no persistence)."""
        self.stop()
        self.start()

    def kill_pubsub_clients(self) -> int:
        """``CLIENT KILL TYPE pubsub``; return how many connections Redis closed."""
        with self.client() as client:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))

    def close(self) -> None:
        """Stop and remove the working directory."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A running server, stopped and removed afterwards."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


class RedisClusterNodes:
    """Three ``redis-server --cluster-enabled yes`` nodes joined by ``redis-cli --cluster
    create`` (three primaries, no replicas)."""

    def __init__(self, size: int = 3) -> None:
        require_tool("redis-cli")
        self.workdir = Path(tempfile.mkdtemp(prefix="tempest-redis-cluster-"))
        self.nodes = [RedisServer(cluster=True, workdir=self.workdir) for _ in range(size)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                require_tool("redis-cli"),
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        deadline = time.monotonic() + START_TIMEOUT * 2
        while time.monotonic() < deadline:
            if all(self._state_ok(node) for node in self.nodes):
                return
            time.sleep(0.05)
        raise RuntimeError("redis cluster did not reach cluster_state:ok in time")

    @staticmethod
    def _state_ok(node: RedisServer) -> bool:
        try:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
        except (redis.RedisError, OSError):
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A running 3-node cluster, stopped and removed afterwards."""
    cluster = RedisClusterNodes()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
