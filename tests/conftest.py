"""Fixtures shared by every test module."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _tempest_logs_visible(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tempest_ws")
