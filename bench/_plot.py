"""The performance plot: a small hand-written SVG of throughput and p99 against N."""

from __future__ import annotations

import math
from typing import Any

from ._format import COLORS, KINDS, LABELS
from ._verdicts import get


def _nice_ticks(top: float) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2 or 5 x 10^k)."""
    raw = top / 4 if top > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [step * i for i in range(math.ceil(top / step) + 1)]


def _label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:,.0f}k"
    return f"{value:g}"


def svg(result: dict[str, Any]) -> str:
    """Two panels against N (log scale): burst throughput (linear), paced p99 (log)."""
    runs: dict[str, dict[str, Any]] = result["runs"]
    panels = [
        ("burst throughput (msgs/s)", "burst.msgs_per_s", False),
        ("paced p99 latency (ms, log scale)", "paced.latency_ms.p99", True),
    ]
    width, height = 860, 330
    pw, ph, top, left0 = 330, 220, 40, 70
    ns = sorted({int(n) for per in runs.values() for n in per})
    if not ns:
        ns = [100]
    lo, hi = math.log10(min(ns)), math.log10(max(ns))
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, (title, path, log_y) in enumerate(panels):
        left = left0 + i * (pw + 90)
        values = [
            v
            for k in runs
            for n in ns
            if isinstance(v := get(runs[k].get(str(n)), path), (int, float)) and v > 0
        ]
        if log_y:
            ylo = math.floor(math.log10(min(values or [1.0])))
            yhi = max(ylo + 1, math.ceil(math.log10(max(values or [10.0]))))
            ticks = [10.0**e for e in range(ylo, yhi + 1)]

            def ypos(v: float, ylo: int = ylo, yhi: int = yhi) -> float:
                return top + ph - ph * (math.log10(v) - ylo) / (yhi - ylo)

        else:
            ticks = _nice_ticks(max(values or [1.0]) * 1.05)

            def ypos(v: float, ymax: float = ticks[-1]) -> float:
                return top + ph - ph * v / ymax

        out.append(
            f'<text x="{left + pw / 2}" y="{top - 14}" text-anchor="middle" '
            f'font-weight="bold">{title}</text>'
        )
        out.append(
            f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>'
        )
        for tick in ticks:
            y = ypos(tick) if (tick > 0 or not log_y) else top + ph
            out.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>'
            )
            out.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>'
            )

        def xpos(n: int, left: int = left) -> float:
            return left + 15 + (pw - 30) * (math.log10(n) - lo) / (hi - lo)

        for n in ns:
            out.append(
                f'<text x="{xpos(n):.1f}" y="{top + ph + 16}" text-anchor="middle">{n:,}</text>'
            )
        out.append(
            f'<text x="{left + pw / 2}" y="{top + ph + 34}" '
            'text-anchor="middle">N connections</text>'
        )
        for kind in KINDS:
            points = []
            for n in ns:
                v = get(runs.get(kind, {}).get(str(n)), path)
                if isinstance(v, (int, float)) and v > 0:
                    points.append((xpos(n), ypos(v)))
            if not points:
                continue
            color = COLORS[kind]
            if len(points) > 1:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
                out.append(
                    f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>'
                )
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
    x, y = left0, height - 14
    for kind in (k for k in KINDS if k in runs):
        out.append(f'<rect x="{x}" y="{y - 9}" width="14" height="4" fill="{COLORS[kind]}"/>')
        out.append(f'<text x="{x + 20}" y="{y - 3}">{LABELS[kind]}</text>')
        x += 40 + 6.5 * len(LABELS[kind])
    out.append("</svg>")
    return "\n".join(out) + "\n"
