"""Fixtures shared by every test module."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import Chromium, launch_chromium
from tests.helpers.redis_server import RedisClusterNodes, RedisServer
from tests.helpers.support import require_tool


@pytest.fixture(autouse=True)
def _tempest_logs_visible(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tempest_ws")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    """A 3-node local Redis Cluster for one test module, stopped by PID afterwards."""
    require_tool("redis-server")
    nodes = RedisClusterNodes()
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for one test, stopped by PID after."""
    require_tool("redis-server")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Chromium]:
    """Real headless Chromium with a fresh profile for one test (see tests/helpers/browser.py)."""
    async with launch_chromium(tmp_path) as browser:
        yield browser
