"""``.env.example`` lists every WS_* setting with its default."""

from __future__ import annotations

import json
from pathlib import Path

from tempest_ws import WebSocketSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def _listed() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def test_every_setting_is_listed_and_nothing_else() -> None:
    assert set(_listed()) == set(WebSocketSettings.model_fields)


def test_listed_defaults_match_the_class() -> None:
    default = WebSocketSettings(_env_file=None)  # type: ignore[call-arg]
    for name, value in _listed().items():
        expected = getattr(default, name)
        if isinstance(expected, list):
            assert value in (",".join(expected), json.dumps(expected)), name
        elif expected is None:
            assert value == "", name
        elif isinstance(expected, bool):
            assert value == str(expected).lower(), name
        elif isinstance(expected, float):
            assert float(value) == expected, name
        else:
            assert value == str(expected), name


def test_example_file_loads() -> None:
    settings = WebSocketSettings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    assert settings.WS_JWT_SECRET is None
