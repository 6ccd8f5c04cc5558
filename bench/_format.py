"""How the performance page writes figures: server labels and colours, numbers, cells."""

from __future__ import annotations

from typing import Any

from ._verdicts import get

LABELS = {
    "bare": "bare FastAPI loop",
    "native": "websockets native + broadcast()",
    "picows": "picows (C) own server",
    "tempest": "tempest_ws hub",
    "tempest_ref": "tempest_ws (ref tree)",
}
COLORS = {
    "bare": "#d62728",
    "native": "#1f77b4",
    "picows": "#ff7f0e",
    "tempest": "#2ca02c",
    "tempest_ref": "#9467bd",
}
KINDS = tuple(LABELS)


def num(v: Any, fmt: str = "{:,.0f}") -> str:
    """``v`` formatted with ``fmt``; a dash for a figure not measured."""
    return "–" if v is None else fmt.format(v)


def times(v: Any) -> str:
    """A ratio as ``1.23×``; a dash for one not measured."""
    return "–" if v is None else f"{v:.2f}×"


def growth(run: dict[str, Any]) -> float | None:
    """RSS after the traffic phases minus after connecting, in MB."""
    after, before = run.get("rss_after_traffic_mb"), run.get("rss_conn_mb")
    return None if after is None or before is None else after - before


def stall_cell(run: dict[str, Any]) -> str:
    """The raw table's stalled-client cell: rounds seen, p99, what became of it."""
    s = run.get("stall") or {}
    paced = s.get("paced") or {}
    if not paced:
        return "–"
    seen = f"{paced.get('min_count')} of {paced.get('rounds')} rounds"
    if paced.get("stuck"):
        return f"{seen}, then stuck"
    view = s.get("server_view") or {}
    client = s.get("client_view") or {}
    code = view.get("closed_code")
    fate = f"closed {code}" if code else "not closed"
    if client.get("state") in ("reset", "eof"):
        fate += f", socket {'aborted' if client['state'] == 'reset' else 'closed'}"
    p99 = get(paced, "latency_ms.p99")
    return f"{seen}, p99 {num(p99, '{:.1f}')} ms; {fate}"
