"""Close codes: one enum, one explanation each."""

from __future__ import annotations

from tempest_ws import CLOSE_CODE_INFO, CloseCode, describe_close_code


def test_every_code_is_explained() -> None:
    assert set(CLOSE_CODE_INFO) == set(CloseCode)
    for info in CLOSE_CODE_INFO.values():
        assert info.meaning
        assert info.client_action


def test_codes_follow_rfc_6455_ranges() -> None:
    for code in CloseCode:
        assert 1000 <= code <= 1015 or 4000 <= code <= 4999


def test_describe() -> None:
    assert "token" in describe_close_code(4401)
    assert describe_close_code(4999) == "unknown close code 4999"
