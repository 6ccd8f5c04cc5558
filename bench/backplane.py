"""Backplane benchmark: cross-process delivery through Redis against the in-process hub.

Run ``.venv/bin/python -m bench.backplane`` (``--quick`` for a short run). Everything
runs on loopback in child processes started and stopped here by PID: ``redis-server``
(no persistence), tempest_ws nodes (``python -m bench.backplane node``: the router and
hub under uvicorn, settings from ``WS_*`` variables) and one process of raw WebSocket
clients (``python -m bench.backplane clients``). Every load loop is bounded by a count
and a deadline. CPU is read from ``/proc/<pid>/stat`` of each process, so per-delivery
costs hold even though everything shares the machine's cores.

Scenarios, all in the same run:

``in_process``  one node, memory backplane: it publishes to a topic its clients hold.
``redis``       two nodes on one Redis: node 1 publishes, node 2's clients receive.
``redis_one``   the same with one subscriber: the fixed cost of one packet on a node.
``cluster``     three nodes on a 3-shard Redis Cluster, each publishing to topics the
                others hold; per-node CPU measured and compared with the sizing model
                fitted on the ``redis`` runs.

Writes ``bench/results/backplane.json`` and prints the Redis/in-process ratios and the
model's per-node prediction error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import random
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._proc import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "backplane.json"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
PAD = "x" * 160  # a ~230-byte envelope, a typical chat or notification message


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def command_lines() -> Any:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield json.loads(line)


# -- role "node": one tempest_ws process --------------------------------------------------


async def run_node() -> None:
    import uvicorn
    from fastapi import FastAPI, WebSocket

    from tempest_ws import (
        BackplaneError,
        WebSocketConnection,
        WebSocketHub,
        WebSocketSettings,
        make_websocket_router,
        uvicorn_options,
    )

    settings = WebSocketSettings(_env_file=None)  # type: ignore[call-arg]
    hub = WebSocketHub.from_settings(settings)

    async def resolver(token: str) -> str:
        return token

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            message = await ws.receive_json()
            if message.get("type") == "subscribe":
                await hub.subscribe(connection.connection_id, message["data"]["topic"])
                await ws.send_json({"type": "subscribed", "data": {}})

    app = FastAPI()
    app.include_router(
        make_websocket_router(handler, hub=hub, bearer_resolver=resolver, settings=settings)
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", **uvicorn_options(settings)
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(3000):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    reply({"event": "ready", "port": sock.getsockname()[1]})
    seq = os.getpid() << 32  # sequence numbers unique across nodes
    async for cmd in command_lines():
        op = cmd.pop("op")
        if op == "quit":
            reply({"ok": True})
            break
        if op == "usage":
            stats, cluster = hub.stats(), hub.cluster_stats()
            reply(
                {
                    "connections": stats.connections,
                    "frames_queued": stats.frames_queued,
                    "packets_received": cluster.packets_received,
                    "publish_errors": cluster.publish_errors,
                    "cpu_s": time.process_time(),  # ns resolution, unlike /proc's ticks
                    "gc": [g["collections"] for g in gc.get_stats()],
                }
            )
        elif op == "burst":
            topics: list[str] = cmd["topics"]
            deadline = time.monotonic() + float(cmd["timeout_s"])
            interval, width = float(cmd.get("interval", 0)), int(cmd.get("concurrency", 1))
            outcome = {"published": 0, "errors": 0}

            async def publish(n: int, topic: str, outcome: dict[str, int]) -> None:
                envelope = {"type": "b", "data": {"s": n, "t": time.time_ns(), "p": PAD}}
                try:
                    await hub.broadcast(envelope, topic=topic)
                    outcome["published"] += 1
                except BackplaneError:
                    outcome["errors"] += 1

            tick = time.monotonic()
            total = int(cmd["n"])
            for first in range(0, total, width):
                if time.monotonic() > deadline:
                    break
                batch = range(first, min(total, first + width))
                await asyncio.gather(
                    *(publish(seq + i, topics[i % len(topics)], outcome) for i in batch)
                )
                if interval:
                    tick = max(tick + interval, time.monotonic())
                    await asyncio.sleep(tick - time.monotonic())
            seq += total
            reply(outcome)
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(serving, 15)


# -- role "clients": raw WebSocket clients, cheap enough to take thousands of frames ------


class Phase:
    """What the clients counted since the last ``expect``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.latencies: list[int] = []
        self.received = 0
        self.duplicates = 0
        self.first_ns = 0
        self.last_ns = 0


class RawClient(asyncio.Protocol):
    """Handshake, then count ``b`` frames and their latency; answer pings."""

    def __init__(self, request: bytes, phase: Phase) -> None:
        self.request = request
        self.phase = phase
        self.buffer = b""
        self.open = False
        self.subscribed = asyncio.get_running_loop().create_future()
        self.hello = asyncio.get_running_loop().create_future()
        self.seen: set[int] = set()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def send_text(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 126
        assert self.transport is not None
        self.transport.write(bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.open, buffer = True, buffer[end + 4 :]
        while len(buffer) >= 2:
            opcode, size, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(buffer[2:4]), 4
            elif size == 127:
                size, start = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < start + size:
                break
            payload, buffer = buffer[start : start + size], buffer[start + size :]
            if opcode == 0x1:
                self.on_text(payload)
            elif opcode == 0x9 and self.transport is not None:  # protocol ping
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
        self.buffer = buffer

    def on_text(self, payload: bytes) -> None:
        now = time.time_ns()
        message = json.loads(payload)
        kind = message["type"]
        if kind == "b":
            phase, seq = self.phase, message["data"]["s"]
            if seq in self.seen:
                phase.duplicates += 1
                return
            self.seen.add(seq)
            phase.received += 1
            phase.latencies.append(now - message["data"]["t"])
            phase.first_ns = phase.first_ns or now
            phase.last_ns = now
        elif kind == "hello" and not self.hello.done():
            self.hello.set_result(None)
        elif kind == "subscribed" and not self.subscribed.done():
            self.subscribed.set_result(None)
        elif kind == "ping":
            self.send_text('{"type":"pong","data":{}}')


async def run_clients() -> None:
    phase = Phase()
    clients: list[RawClient] = []
    loop = asyncio.get_running_loop()
    reply({"event": "ready"})
    async for cmd in command_lines():
        op = cmd.pop("op")
        if op == "quit":
            reply({"ok": True})
            break
        if op == "connect":
            made = []
            for i in range(int(cmd["count"])):
                user = f"{cmd['prefix']}{i}"
                request = (
                    f"GET /ws?token={user} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
                _, client = await loop.create_connection(
                    functools.partial(RawClient, request, phase), "127.0.0.1", int(cmd["port"])
                )
                made.append(client)
            async with asyncio.timeout(60):
                for i, client in enumerate(made):
                    await client.hello
                    topic = cmd["topics"][i % len(cmd["topics"])]
                    client.send_text(json.dumps({"type": "subscribe", "data": {"topic": topic}}))
                    await client.subscribed
            clients.extend(made)
            reply({"connected": len(made)})
        elif op == "expect":
            expected, deadline = int(cmd["deliveries"]), time.monotonic() + cmd["timeout_s"]
            while phase.received < expected and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # bounded poll: the deadline ends it
            await asyncio.sleep(float(cmd.get("quiet_s", 0.3)))  # late duplicates show here
            lat = sorted(phase.latencies) or [0]
            reply(
                {
                    "received": phase.received,
                    "duplicates": phase.duplicates,
                    "span_s": (phase.last_ns - phase.first_ns) / 1e9,
                    "first_ns": phase.first_ns,
                    "latency_us": {
                        q: lat[min(len(lat) - 1, int(len(lat) * f))] / 1000
                        for q, f in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
                    },
                }
            )
            phase.reset()
            for client in clients:
                client.seen.clear()
        elif op == "close":
            for client in clients:
                if client.transport is not None:
                    client.transport.close()
            clients.clear()
            reply({"closed": True})


# -- driver --------------------------------------------------------------------------------


class Child:
    """``python -m bench.backplane ROLE`` speaking JSON lines; stopped by PID."""

    def __init__(self, role: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.backplane", role],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.ready = self.read(60)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"child {self.pid} silent for {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.pid} exited ({self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, timeout: float = 120, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return self.read(timeout)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE_KB

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(timeout=20, op="quit")
        stop_pid(self.proc)


def stop_pid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def free_port(with_bus: bool = False) -> int:
    for _ in range(200):
        port = random.randint(20_000, 40_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                if with_bus:
                    b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


class Redis:
    """redis-server processes on loopback, no persistence: one, or a 3-shard cluster."""

    def __init__(self, shards: int = 0) -> None:
        self.binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports = [free_port(with_bus=shards > 0) for _ in range(max(1, shards))]
        for port in self.ports:
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", f"n{port}.conf"]
            self.procs.append(
                subprocess.Popen(
                    [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
                    + ["--appendonly", "no", "--dir", str(self.dir), "--loglevel", "warning"]
                    + (extra if shards else []),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(port, b"PONG", ["PING"])
        if shards:
            cli = shutil.which("redis-cli") or sys.exit("redis-cli is not installed")
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=60,
            )
            for port in self.ports:
                self._wait(port, b"cluster_state:ok", ["CLUSTER", "INFO"])
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    @staticmethod
    def _wait(port: int, expect: bytes, command: list[str]) -> None:
        request = f"*{len(command)}\r\n".encode() + b"".join(
            f"${len(c)}\r\n{c}\r\n".encode() for c in command
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as s,
            ):
                s.sendall(request)
                if expect in s.recv(4096):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis on {port} not ready")

    def cpu(self) -> float:
        """CPU seconds of every server, from ``INFO cpu`` (microsecond resolution)."""
        total = 0.0
        for port in self.ports:
            with socket.create_connection(("127.0.0.1", port), 5) as c:
                c.sendall(b"*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n")
                data = b""
                for _ in range(100):  # one small bulk reply
                    data += c.recv(65536)
                    if data.count(b"\r\n") >= 3 and data.endswith(b"\r\n"):
                        break
            for line in data.decode().splitlines():
                name, _, value = line.partition(":")
                if name in ("used_cpu_sys", "used_cpu_user"):
                    total += float(value)
        return total

    def stop(self) -> None:
        for proc in self.procs:
            stop_pid(proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def node_env(redis_url: str | None, cluster: bool = False) -> dict[str, str]:
    env = {"WS_MAX_CONNECTIONS": "100000", "WS_SEND_QUEUE_SIZE": "100000"}
    if redis_url:
        env |= {"WS_REDIS_URL": redis_url, "WS_REDIS_CLUSTER": str(cluster).lower()}
    return env


def delivery_run(
    publisher: Child,
    receivers: list[Child],
    clients: Child,
    *,
    topics: list[str],
    messages: int,
    deliveries: int,
    interval: float = 0.0,
    concurrency: int = 1,
    redis: Redis | None = None,
) -> dict[str, Any]:
    """One burst (``interval=0``) or paced run; CPU deltas of every process involved."""
    nodes = [publisher, *[r for r in receivers if r is not publisher]]
    usage0 = [n.ask(op="usage") for n in nodes]
    redis_cpu0 = redis.cpu() if redis else 0.0
    sent = publisher.ask(
        op="burst",
        n=messages,
        topics=topics,
        interval=interval,
        concurrency=concurrency,
        timeout_s=60,
    )
    got = clients.ask(op="expect", deliveries=deliveries, timeout_s=60)
    usage = [n.ask(op="usage") for n in nodes]
    cpu = [u["cpu_s"] - u0["cpu_s"] for u, u0 in zip(usage, usage0, strict=True)]
    return {
        "messages": sent["published"],
        "publish_errors": sent["errors"],
        "deliveries_expected": deliveries,
        "delivered": got["received"],
        "duplicates": got["duplicates"],
        "latency_us": got["latency_us"],
        "deliveries_per_s": round(got["received"] / got["span_s"]) if got["span_s"] else None,
        "cpu_s": [round(c, 4) for c in cpu],
        "packets_in": [
            u["packets_received"] - u0["packets_received"]
            for u, u0 in zip(usage, usage0, strict=True)
        ],
        "deliveries": [
            u["frames_queued"] - u0["frames_queued"] for u, u0 in zip(usage, usage0, strict=True)
        ],
        "redis_cpu_s": round(redis.cpu() - redis_cpu0, 4) if redis else None,
    }


class Plan:
    """How much of everything one run does (every count bounds a loop)."""

    def __init__(self, quick: bool) -> None:
        self.conns = 240 if quick else 480
        self.burst = 150 if quick else 300  # in-process against redis
        self.paced = 100 if quick else 200
        self.fit = 400 if quick else 800  # model fit, big topic
        self.single = 3000 if quick else 6000  # model fit, one subscriber
        self.check = 300 if quick else 600  # per node, cluster check
        self.concurrency = 8
        self.rounds = 1 if quick else 3


def compare(plan: Plan, clients: Child) -> dict[str, Any]:
    """In-process hub against two processes on one Redis, same clients, same load:
    ``hop`` (one subscriber, paced: the cost of the trip itself), ``paced`` and ``burst``
    (a topic of ``conns`` subscribers)."""
    out: dict[str, Any] = {}
    redis = Redis()
    nodes: list[Child] = []
    try:
        for mode in ("in_process", "redis"):
            env = node_env(None if mode == "in_process" else redis.url)
            publisher = Child("node", env)
            receiver = publisher if mode == "in_process" else Child("node", env)
            nodes = [publisher, receiver]
            port = receiver.ready["port"]
            rss0 = receiver.rss_kb()
            clients.ask(op="connect", port=port, count=plan.conns, prefix="m", topics=["t"])
            if mode == "in_process":
                out["kb_per_connection"] = round((receiver.rss_kb() - rss0) / plan.conns, 1)
            clients.ask(op="connect", port=port, count=1, prefix="h", topics=["hop"])
            common: dict[str, Any] = {"redis": redis if mode == "redis" else None}
            out[mode] = {
                "hop": delivery_run(
                    publisher,
                    [receiver],
                    clients,
                    topics=["hop"],
                    messages=plan.paced,
                    deliveries=plan.paced,
                    interval=0.005,
                    **common,
                ),
                "paced": delivery_run(
                    publisher,
                    [receiver],
                    clients,
                    topics=["t"],
                    messages=plan.paced,
                    deliveries=plan.paced * plan.conns,
                    interval=0.01,
                    **common,
                ),
                "burst": delivery_run(
                    publisher,
                    [receiver],
                    clients,
                    topics=["t"],
                    messages=plan.burst,
                    deliveries=plan.burst * plan.conns,
                    concurrency=plan.concurrency,
                    **common,
                ),
            }
            clients.ask(op="close")
            for node in dict.fromkeys(nodes):
                node.stop()
            nodes = []
    finally:
        for node in dict.fromkeys(nodes):
            node.stop()
        redis.stop()
    return out


def fit(plan: Plan, clients: Child, cluster: Redis) -> dict[str, Any]:
    """The model's constants, measured on the cluster with two nodes.

    * publishing: node 1 publishes to twelve topics nobody holds (spread over the shards);
    * receiving: node 2 gets packets for a topic of one subscriber and for a topic of
      every connection; the line through the two (cpu per packet = c_packet + fan-out *
      c_delivery) gives both costs. A run at fan-out ``k`` (the check's) is reported to
      show how straight that line is;
    * idle: node 2's CPU over one quiet second with its connections open.
    """
    one = two = None
    nobody = [f"nobody-{k}" for k in range(12)]
    k = plan.conns // 12
    try:
        env = node_env(cluster.url, cluster=True)
        one, two = Child("node", env), Child("node", env)
        port = two.ready["port"]
        clients.ask(op="connect", port=port, count=plan.conns, prefix="f", topics=["big"])
        clients.ask(op="connect", port=port, count=k, prefix="k", topics=["mid"])
        clients.ask(op="connect", port=port, count=1, prefix="g", topics=["one"])
        warm = delivery_run(one, [two], clients, topics=["mid"], messages=20, deliveries=20 * k)
        runs: dict[str, Any] = {"warm_up": warm}
        for name, topics, messages, per_message in (
            ("publish_only", nobody, plan.single, 0),
            ("fan_out_k", ["mid"], plan.fit, k),
            ("one_subscriber", ["one"], plan.single, 1),
            ("fan_out_all", ["big"], plan.fit // 4, plan.conns),
        ):
            runs[name] = delivery_run(
                one,
                [two],
                clients,
                topics=topics,
                messages=messages,
                deliveries=messages * per_message,
                concurrency=plan.concurrency,
                redis=cluster,
            )
        idle0 = two.ask(op="usage")["cpu_s"]
        time.sleep(1.0)
        idle = two.ask(op="usage")["cpu_s"] - idle0
        clients.ask(op="close")
    finally:
        for child in (one, two):
            if child is not None:
                child.stop()
    pub = runs["publish_only"]
    # Per packet received, a node pays c_packet + fan-out × c_delivery: the line through
    # the two well-separated fan-outs (1 and every connection). The middle one (k, the
    # check's own fan-out) is reported, not fitted: it shows how straight the line is.
    points = [
        (run["deliveries"][1] / run["packets_in"][1], run["cpu_s"][1] / run["packets_in"][1])
        for run in (runs["one_subscriber"], runs["fan_out_k"], runs["fan_out_all"])
    ]
    (x1, y1), _, (x2, y2) = points
    c_delivery = (y2 - y1) / (x2 - x1)
    c_packet = max(y1 - c_delivery * x1, 0.0)
    per_packet = {f"fan_out_{round(x)}": round(y * 1e6, 1) for x, y in points}
    model = {
        "fan_out_k": k,
        "cpu_us_per_publish": round(pub["cpu_s"][0] / max(pub["messages"], 1) * 1e6, 2),
        "cpu_us_per_packet_in": round(c_packet * 1e6, 2),
        "cpu_us_per_delivery": round(c_delivery * 1e6, 2),
        "idle_cpu_ms_per_s": round(idle * 1e3, 2),
        "redis_cpu_us_per_publish": round(
            (runs["one_subscriber"]["redis_cpu_s"] or 0)
            / max(runs["one_subscriber"]["messages"], 1)
            * 1e6,
            2,
        ),
        "redis_ops_per_publish": 1,
    }
    return {"runs": runs, "model": model, "cpu_us_per_packet_by_fan_out": per_packet}


def check(plan: Plan, clients: Child, cluster: Redis, model: dict[str, float]) -> dict[str, Any]:
    """Three nodes, each holding four topics; each publishes to the others' topics. The
    model predicts each node's CPU from what it did (and how long the run took); the run
    measures it."""
    env = node_env(cluster.url, cluster=True)
    nodes = [Child("node", env) for _ in range(3)]
    try:
        held = {i: [f"c{i}-{k}" for k in range(4)] for i in range(3)}
        per_node = plan.conns // 12 * 4  # four topics per node, equally subscribed
        for i, node in enumerate(nodes):
            clients.ask(
                op="connect",
                port=node.ready["port"],
                count=per_node,
                prefix=f"n{i}u",
                topics=held[i],
            )
        subscribers = per_node // 4
        for i, node in enumerate(nodes):  # warm-up, not measured: first-use costs
            others = [t for j in range(3) if j != i for t in held[j]]
            node.ask(op="burst", n=20, topics=others, concurrency=plan.concurrency, timeout_s=30)
        clients.ask(op="expect", deliveries=60 * subscribers, timeout_s=30, quiet_s=0.1)
        usage0 = [n.ask(op="usage") for n in nodes]
        redis0 = cluster.cpu()
        wall0 = time.monotonic()
        published = []
        total = delivered = duplicates = 0
        latencies = []
        for i, node in enumerate(nodes):  # one publisher at a time, like the fit
            others = [t for j in range(3) if j != i for t in held[j]]
            published.append(
                node.ask(
                    op="burst",
                    n=plan.check,
                    topics=others,
                    concurrency=plan.concurrency,
                    timeout_s=60,
                )
            )
            total += published[-1]["published"]
            got = clients.ask(
                op="expect", deliveries=published[-1]["published"] * subscribers, timeout_s=60
            )
            delivered += got["received"]
            duplicates += got["duplicates"]
            latencies.append(got["latency_us"]["p50"])
        usage = [n.ask(op="usage") for n in nodes]
        wall = time.monotonic() - wall0
        cpu = [u["cpu_s"] - u0["cpu_s"] for u, u0 in zip(usage, usage0, strict=True)]
        rows = []
        for i in range(3):
            packets = usage[i]["packets_received"] - usage0[i]["packets_received"]
            deliveries = usage[i]["frames_queued"] - usage0[i]["frames_queued"]
            predicted = (
                published[i]["published"] * model["cpu_us_per_publish"] / 1e6
                + packets * model["cpu_us_per_packet_in"] / 1e6
                + deliveries * model["cpu_us_per_delivery"] / 1e6
                + wall * model["idle_cpu_ms_per_s"] / 1e3
            )
            rows.append(
                {
                    "published": published[i]["published"],
                    "packets_in": packets,
                    "deliveries": deliveries,
                    "cpu_s": round(cpu[i], 4),
                    "predicted_cpu_s": round(predicted, 4),
                    "error_pct": round((predicted - cpu[i]) / cpu[i] * 100, 1) if cpu[i] else None,
                }
            )
        clients.ask(op="close")
        return {
            "shards": 3,
            "wall_s": round(wall, 2),
            "nodes": rows,
            "delivered": delivered,
            "expected": total * subscribers,
            "duplicates": duplicates,
            "latency_p50_us_per_round": latencies,
            "publishes": total,
            "redis_cpu_s": round(cluster.cpu() - redis0, 3),
            "redis_cpu_predicted_s": round(total * model["redis_cpu_us_per_publish"] / 1e6, 3),
        }
    finally:
        for node in nodes:
            node.stop()


def measure(quick: bool) -> dict[str, Any]:
    plan = Plan(quick)
    results: dict[str, Any] = {
        "plan": {
            "connections": plan.conns,
            "burst_messages": plan.burst,
            "paced_messages": plan.paced,
            "publish_concurrency": plan.concurrency,
            "fit_messages": plan.fit,
            "fit_single_messages": plan.single,
            "check_messages_per_node": plan.check,
            "fit_check_rounds": plan.rounds,
        },
    }
    clients = Child("clients")
    try:
        results |= compare(plan, clients)
        cluster = Redis(shards=3)
        try:
            rounds = []
            for _ in range(plan.rounds):  # fit then check, alternating: same conditions
                fitted = fit(plan, clients, cluster)
                fitted["model"]["kb_per_connection"] = results["kb_per_connection"]
                fitted["check"] = check(plan, clients, cluster, fitted["model"])
                rounds.append(fitted)
            results["rounds"] = rounds
            errors = [row["error_pct"] for r in rounds for row in r["check"]["nodes"]]
            results["model"] = {
                key: round(statistics.median(r["model"][key] for r in rounds), 2)
                for key in rounds[0]["model"]
            }
            results["model_error_pct"] = {
                "median": statistics.median(errors),
                "min": min(errors),
                "max": max(errors),
            }
            results["cluster_check"] = rounds[-1]["check"]
        finally:
            cluster.stop()
    finally:
        clients.stop()
    return results


def report(r: dict[str, Any]) -> None:
    local, remote = r["in_process"], r["redis"]
    print(f"connections per node: {r['plan']['connections']}, {r['kb_per_connection']} KB each")
    for mode in ("hop", "paced", "burst"):
        a, b = local[mode], remote[mode]
        print(
            f"{mode:5}: in-process p50 {a['latency_us']['p50']:.0f} us, "
            f"p99 {a['latency_us']['p99']:.0f} us, {a['deliveries_per_s']} deliveries/s | "
            f"redis p50 {b['latency_us']['p50']:.0f} us, p99 {b['latency_us']['p99']:.0f} us, "
            f"{b['deliveries_per_s']} deliveries/s"
        )
    ratios = {
        f"{mode}_{q}_latency_redis_over_in_process": round(
            remote[mode]["latency_us"][q] / max(local[mode]["latency_us"][q], 1), 2
        )
        for mode in ("hop", "paced")
        for q in ("p50", "p99")
    }
    ratios["burst_throughput_redis_over_in_process"] = round(
        (remote["burst"]["deliveries_per_s"] or 0)
        / max(local["burst"]["deliveries_per_s"] or 1, 1),
        2,
    )
    r["ratios"] = ratios
    print("ratios (redis / in-process): " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    print(f"model (cluster): {json.dumps(r['model'])}")
    for n, each in enumerate(r["rounds"]):
        for i, row in enumerate(each["check"]["nodes"]):
            print(
                f"round {n} cluster node {i}: measured {row['cpu_s']} s CPU, "
                f"model {row['predicted_cpu_s']} s ({row['error_pct']:+}%)"
            )
    print(f"model error over every node and round: {json.dumps(r['model_error_pct'])}")
    dupes = [
        local["burst"]["duplicates"],
        remote["burst"]["duplicates"],
        r["cluster_check"]["duplicates"],
    ]
    print(f"duplicates (in-process, redis, cluster): {dupes}")


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="driver", choices=["driver", "node", "clients"])
    parser.add_argument("--quick", action="store_true", help="fewer connections and messages")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role == "node":
        asyncio.run(run_node())
        return
    if args.role == "clients":
        asyncio.run(run_clients())
        return
    started = time.monotonic()
    load0 = load_average()
    results = measure(args.quick)
    report(results)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_before": load0,
        "load_average_after": load_average(),
    }
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} in {results['seconds']} s")


if __name__ == "__main__":
    main()
