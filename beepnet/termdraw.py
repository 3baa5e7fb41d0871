"""Unicode-block drawing helpers shared by the two terminal UIs, `beepnet monitor` and
`beepnet label`.

They live here, below both, so that neither UI has to import the other: the labeller used to
reach into monitor/view.py for them, which made label depend on the monitor.
"""

from __future__ import annotations

from rich.text import Text

FLOOR_DBFS = -90.0
"""The left end of level meters and level timelines."""
SPARKS = " ▁▂▃▄▅▆▇█"


def bar(p: float, width: int) -> Text:
    """A probability 0..1 as a bar with eighth-block resolution."""
    width = max(width, 4)
    eighths = round(min(max(p, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    # Horizontal eighth blocks for the fraction of a cell.
    s = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return Text(s.ljust(width, " "), style="cyan")


def spark(values: list[float | None], lo: float, hi: float) -> str:
    """One row of unicode blocks; None (nothing that second) is a blank."""
    out = []
    for v in values:
        if v is None:
            out.append(" ")
            continue
        frac = (min(max(v, lo), hi) - lo) / (hi - lo)
        out.append(SPARKS[max(1, round(frac * (len(SPARKS) - 1)))])
    return "".join(out)
