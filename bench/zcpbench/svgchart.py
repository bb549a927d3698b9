"""A small SVG bar chart, standard library only: one panel per workload,
one horizontal bar per tool (median, with a min–max whisker and the value
written beside it), each panel on its own scale, bars coloured by family
(zcp, the C reference, other tools) and the baseline marked (grey bar,
bold name, a dashed line across the panel at its value)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH = 960
LABEL_W = 330  # the tool names, left of the bars
VALUE_W = 150  # room right of the longest bar for its value
BAR_H = 16
GAP = 6
TITLE_H = 26
PANEL_GAP = 18
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"
COLOURS = {"zcp": "#1f6fb4", "ref": "#6b6b6b", "peer": "#e08a2c"}
BASELINE_COLOUR = "#b8b8b8"


@dataclass
class Bar:
    label: str
    value: float | None  # None: failed or not measured
    low: float | None = None
    high: float | None = None
    family: str = "peer"  # a key of COLOURS
    baseline: bool = False
    text: str = ""  # what is written beside the bar


@dataclass
class Panel:
    title: str
    bars: list[Bar]


def panel_height(panel: Panel) -> int:
    return TITLE_H + len(panel.bars) * (BAR_H + GAP) + 8


def legend(y: int) -> list[str]:
    items = [("zcp", COLOURS["zcp"]), ("C reference (no hashing)", COLOURS["ref"]),
             ("other tools", COLOURS["peer"]), ("baseline (nc; tar | nc for the tree)", BASELINE_COLOUR)]  # fmt: skip
    parts, x = [], LABEL_W
    for name, colour in items:
        parts.append(f"<rect x='{x}' y='{y}' width='12' height='12' fill='{colour}'/>")
        parts.append(f"<text x='{x + 17}' y='{y + 10}' font-size='12' {FONT}>{escape(name)}</text>")
        x += 30 + 7 * len(name)
    return parts


def draw_panel(panel: Panel, top: int) -> list[str]:
    values = [v for bar in panel.bars for v in (bar.value, bar.high) if v]
    scale = (WIDTH - LABEL_W - VALUE_W) / max(values, default=1.0)
    parts = [f"<text x='8' y='{top + 17}' font-size='14' font-weight='bold' {FONT}>{escape(panel.title)}</text>"]
    base = next((bar.value for bar in panel.bars if bar.baseline and bar.value), None)
    if base is not None:
        x = LABEL_W + base * scale
        bottom = top + TITLE_H + len(panel.bars) * (BAR_H + GAP) - GAP
        parts.append(
            f"<path d='M{x:.1f} {top + TITLE_H - 3}V{bottom + 3}' stroke='#777' stroke-width='1' "
            "stroke-dasharray='4 3' fill='none'/>"
        )
    y = top + TITLE_H
    for bar in panel.bars:
        mid = y + BAR_H / 2
        weight = " font-weight='bold'" if bar.baseline else ""
        parts.append(
            f"<text x='{LABEL_W - 8}' y='{mid + 4}' font-size='12' text-anchor='end'{weight} {FONT}>"
            f"{escape(bar.label)}</text>"
        )
        if bar.value is None:
            parts.append(f"<text x='{LABEL_W + 4}' y='{mid + 4}' font-size='12' fill='#b00000' {FONT}>FAIL</text>")
            y += BAR_H + GAP
            continue
        colour = BASELINE_COLOUR if bar.baseline else COLOURS.get(bar.family, COLOURS["peer"])
        length = max(bar.value * scale, 1.0)
        parts.append(f"<rect x='{LABEL_W}' y='{y}' width='{length:.1f}' height='{BAR_H}' fill='{colour}'/>")
        if bar.low is not None and bar.high is not None and bar.high > bar.low:
            x1, x2 = LABEL_W + bar.low * scale, LABEL_W + bar.high * scale
            parts.append(
                f"<path d='M{x1:.1f} {mid:.1f}H{x2:.1f}M{x1:.1f} {mid - 4:.1f}V{mid + 4:.1f}"
                f"M{x2:.1f} {mid - 4:.1f}V{mid + 4:.1f}' stroke='#222' stroke-width='1' fill='none'/>"
            )
        right = LABEL_W + max(length, (bar.high or 0) * scale) + 6
        parts.append(
            f"<text x='{right:.1f}' y='{mid + 4}' font-size='12' stroke='white' stroke-width='3' "
            f"paint-order='stroke' {FONT}>{escape(bar.text)}</text>"
        )
        y += BAR_H + GAP
    return parts


def chart(title: str, subtitle: str, panels: list[Panel]) -> str:
    """The whole SVG document."""
    height = 70 + sum(panel_height(p) + PANEL_GAP for p in panels) + 24
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}'>",
        f"<rect width='{WIDTH}' height='{height}' fill='white'/>",
        f"<text x='8' y='22' font-size='17' font-weight='bold' {FONT}>{escape(title)}</text>",
        f"<text x='8' y='42' font-size='12' fill='#444' {FONT}>{escape(subtitle)}</text>",
    ]
    parts += legend(52)
    top = 76
    for panel in panels:
        parts += draw_panel(panel, top)
        top += panel_height(panel) + PANEL_GAP
    parts.append(
        f"<text x='8' y='{height - 8}' font-size='11' fill='#444' {FONT}>"
        "Bars: median; whiskers: min–max of the measured runs; dashed line: the baseline. Higher is faster.</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
