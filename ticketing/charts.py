"""Charts as SVG, drawn on the server (no script, no CDN): bars (stacked) and lines over labelled buckets.
Every text is escaped; the output is a complete ``image/svg+xml`` document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 36, 70
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#84cc16", "#ec4899", "#64748b")


def _nice(top: float) -> float:
    if top <= 0:
        return 1.0
    step = 10 ** (len(str(int(top))) - 1)
    for m in (1, 2, 2.5, 5, 10):
        if top <= m * step:
            return m * step
    return 10 * step


def _frame(title: str, labels: Sequence[str], top: float, unit: str) -> list[str]:
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i in range(5):
        y = TOP + h - h * i / 4
        value = top * i / 4
        text = f"{value:.0f}" if top >= 4 else f"{value:.2f}"
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + w}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text + unit)}</text>')
    n = max(1, len(labels))
    every = max(1, n // 12)
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + w * (i + 0.5) / n
        out.append(
            f'<text x="{x:.1f}" y="{TOP + h + 12}" text-anchor="end" transform="rotate(-40 {x:.1f} {TOP + h + 12})">'
            f"{escape(label)}</text>"
        )
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    x = LEFT + 220
    for i, name in enumerate(names[: len(PALETTE)]):
        out.append(f'<rect x="{x}" y="10" width="10" height="10" fill="{PALETTE[i]}"/>')
        out.append(f'<text x="{x + 14}" y="19">{escape(name)}</text>')
        x += 20 + 7 * len(name)
    return out


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], unit: str = "") -> str:
    """Stacked bars, one stack per label, one colour per series."""
    names = list(series)[: len(PALETTE)]
    totals = [sum(series[s][i] for s in names) for i in range(len(labels))]
    top = _nice(max(totals, default=0.0))
    out = _frame(title, labels, top, unit)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(1, len(labels))
    bar = max(1.0, w / n * 0.7)
    for i in range(len(labels)):
        x = LEFT + w * i / n + (w / n - bar) / 2
        base = float(TOP + h)
        for k, name in enumerate(names):
            v = series[name][i]
            if v <= 0:
                continue
            height = h * v / top
            base -= height
            out.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" fill="{PALETTE[k]}">'
                f"<title>{escape(f'{labels[i]} {name}: {v:g}')}</title></rect>"
            )
    out += _legend(names)
    out.append("</svg>")
    return "\n".join(out)


def _polyline(colour: str, points: list[str]) -> str:
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'


def line_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], unit: str = "", top: float = 0.0
) -> str:
    """One line per series; a missing value (None) breaks the line."""
    names = list(series)[: len(PALETTE)]
    values = [v for s in names for v in series[s] if v is not None]
    top = top or _nice(max(values, default=0.0))
    out = _frame(title, labels, top, unit)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(1, len(labels))
    for k, name in enumerate(names):
        path: list[str] = []
        for i, v in enumerate(series[name]):
            if v is None:
                if path:
                    out.append(
                        f'<polyline fill="none" stroke="{PALETTE[k]}" stroke-width="2" points="{" ".join(path)}"/>'
                    )
                path = []
                continue
            x, y = LEFT + w * (i + 0.5) / n, TOP + h - h * min(v, top) / top
            path.append(f"{x:.1f},{y:.1f}")
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{PALETTE[k]}">'
                f"<title>{escape(f'{labels[i]} {name}: {v:.4g}')}</title></circle>"
            )
        if path:
            out.append(_polyline(PALETTE[k], path))
    out += _legend(names)
    out.append("</svg>")
    return "\n".join(out)


def report_chart(name: str, report: Mapping[str, object]) -> str:
    """One of ``ticketing.reports.CHARTS`` for a report (``ticketing.reports.summary``)."""
    labels: list[str] = report["labels"]  # type: ignore[assignment]
    series: list[dict[str, float | None]] = report["series"]  # type: ignore[assignment]
    if name == "volume":
        return bar_chart("Volume by channel", labels, report["volume_by_channel"])  # type: ignore[arg-type]
    if name == "service_level":
        sl = [None if s["service_level"] is None else 100 * s["service_level"] for s in series]
        ab = [None if s["abandonment"] is None else 100 * s["abandonment"] for s in series]
        return line_chart("Service level and abandonment", labels, {"service level": sl, "abandonment": ab}, " %", 100)
    if name == "answered_abandoned":
        return bar_chart(
            "Answered and abandoned",
            labels,
            {"answered": [s["answered"] or 0 for s in series], "abandoned": [s["abandoned"] or 0 for s in series]},
        )
    minutes = {
        key: [None if s[field] is None else s[field] / 60 for s in series]  # type: ignore[operator]
        for key, field in (
            ("first response", "first_response_avg"),
            ("handle", "handle_avg"),
            ("resolution", "resolution_avg"),
        )
    }
    return line_chart("Average times (minutes)", labels, minutes, " m")
