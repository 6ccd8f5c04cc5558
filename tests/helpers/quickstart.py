"""The quickstart app (``examples/minimal.py``) loaded with a given ``WS_*`` environment.

The example reads its settings from the environment at import, as the seed's recipe
does, so a test sets the environment (from an empty directory: no stray ``.env``) and
imports the module afresh. Used by ``tests/docs/test_examples.py`` and ``tests/security/``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers.support import SECRET

MODULE = "examples.minimal"


def quickstart_loader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., ModuleType]]:
    """The body of a fixture yielding ``load(WS_X=value, ...)``, which imports
    ``examples.minimal`` afresh with that environment (``yield from`` it)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WS_"):
            monkeypatch.delenv(name)

    def load(**env: Any) -> ModuleType:
        monkeypatch.setenv("WS_JWT_SECRET", SECRET)
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        sys.modules.pop(MODULE, None)
        return importlib.import_module(MODULE)

    yield load
    sys.modules.pop(MODULE, None)
