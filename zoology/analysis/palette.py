"""One colour and marker per mixer family, the same in every figure and notebook.

A family is drawn in the style of its *main mixer*: the last of its mixers that is not `base_conv`
('base_conv+based' -> 'based'; 'base_conv' alone stays). Named mixers have fixed styles
(`FAMILY_STYLES`, including families still to come); any other name (a mixer of your own, or a
`family_column` value) gets a deterministic style from a hash of its name, drawn from colours no
named mixer uses. Two families of one figure that would look alike (a pure `attention` model beside
`base_conv+attention`, or two names whose hashes meet) are told apart by hollow markers and dashed
(then dotted) lines, in name order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import to_rgb


@dataclass(frozen=True)
class Style:
    """How a family is drawn: colour, marker, and (only to separate look-alikes) hollow and dashed."""

    color: str
    marker: str
    variant: int = 0  # 0 for the family's own style; 1, 2, ...: hollow, with dashed, dotted, dash-dot lines

    @property
    def linestyle(self) -> str:
        return ("-", "--", ":", "-.")[self.variant % 4]

    def marker_kwargs(self) -> dict:
        face = "white" if self.variant else self.color
        return {"marker": self.marker, "markerfacecolor": face, "markeredgecolor": self.color}


FAMILY_STYLES: dict[str, Style] = {
    "attention": Style("#1f77b4", "o"),  # blue
    "sliding_window": Style("#17becf", "v"),  # cyan
    "based": Style("#d62728", "s"),  # red
    "rebased": Style("#ff7f0e", "D"),  # orange
    "linear_attention": Style("#2ca02c", "^"),  # green
    "leap": Style("#8c564b", "P"),  # brown
    "mamba": Style("#e377c2", "X"),  # pink
    "mamba2": Style("#9467bd", "*"),  # purple
    "base_conv": Style("#7f7f7f", "h"),  # grey
    "delta_net": Style("#bcbd22", "<"),  # olive
    "gated_delta_net": Style("#6b6ecf", ">"),  # indigo
    "gla": Style("#e7ba52", "p"),  # gold
    "rwkv7": Style("#843c39", "d"),  # maroon
    "hyena": Style("#637939", "8"),  # moss
    "h3": Style("#7b4173", "H"),  # plum
}
ROLE_COLORS: dict[str, str] = {
    "key": "#1f77b4",  # blue
    "value": "#d62728",  # red
    "query": "#2ca02c",  # green
    "lookalike": "#ff7f0e",  # orange: filler equal to a key
    "filler": "#7f7f7f",
    "zero": "#bdbdbd",
    "other": "#444444",
}
"""The colour of each token role (zoology.data.show.ROLES) in the token-weight figures."""
FALLBACK_COLORS = ("#000000", "#3182bd", "#e6550d", "#31a354", "#a55194", "#8c6d31", "#d6616b", "#5254a3")
FALLBACK_MARKERS = ("o", "s", "^", "D", "v", "P")


def main_mixer(family: str) -> str:
    """The mixer a family is known by: its last mixer other than base_conv (dotted paths shortened)."""
    names = [part.rpartition(".")[2] for part in str(family).split("+")]
    others = [n for n in names if n != "base_conv"]
    return others[-1] if others else names[-1]


def family_style(family: str) -> Style:
    """The fixed style of one family (see the module docstring)."""
    mixer = main_mixer(family)
    if mixer in FAMILY_STYLES:
        return FAMILY_STYLES[mixer]
    h = zlib.crc32(mixer.encode())
    return Style(FALLBACK_COLORS[h % len(FALLBACK_COLORS)], FALLBACK_MARKERS[(h // 8) % len(FALLBACK_MARKERS)])


def family_styles(families) -> dict[str, Style]:
    """The style of each family of one figure; look-alikes after the first (in name order) go hollow,
    with dashed (then dotted, dash-dot) lines."""
    out: dict[str, Style] = {}
    seen: dict[tuple[str, str], int] = {}
    for family in sorted(set(map(str, families))):
        style = family_style(family)
        key = (style.color, style.marker)
        out[family] = Style(style.color, style.marker, variant=seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return out


def shades(color: str, n: int) -> list[tuple[float, float, float]]:
    """`n` shades of one colour, darker to lighter (runs of one family in the curves figure)."""
    base = np.array(to_rgb(color))
    if n == 1:
        return [tuple(base)]
    out = []
    for t in np.linspace(-0.25, 0.45, n):
        mixed = base * (1 + t) if t < 0 else base + (1 - base) * t
        out.append(tuple(np.clip(mixed, 0, 1)))
    return out
