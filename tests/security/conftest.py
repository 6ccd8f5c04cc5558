"""Fixtures of the security suite: the quickstart app, loaded with a chosen environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.quickstart import quickstart_loader


@pytest.fixture
def load_minimal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., ModuleType]]:
    """``load_minimal(WS_X=value)`` imports ``examples.minimal`` with that environment."""
    yield from quickstart_loader(monkeypatch, tmp_path)
