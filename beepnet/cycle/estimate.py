"""Time left in a running cycle, from the cycles this machine ran before.

A household runs a few programmes (a 30-min quick wash, a 1 h 30 cotton, a 2 h 50 eco), so
"the median of all past durations" is wrong for every one of them. `estimate` finds the past
cycles that look like the running one and reads the end off them:

1. Each cycle becomes a few landmarks, what a listener hears sharply: a pause began
   (``quiet``), the machine started again after it (``sound``), a spin began (``spin``)
   and, for past cycles, the beep (``end``). The stretches between them are what varies
   from run to run (load, water temperature, heating).
2. The running cycle's landmarks are aligned with each past cycle's, in order, like an edit
   distance. Two landmarks of a kind match at a cost that grows with how much the stretch
   since the previous match differs, so a phase that ran long counts once, not again at
   every landmark after it; one far longer (up to ``STRETCH`` times) is one surprise and the
   alignment starts again from there. A landmark with no counterpart costs ``SKIP``: a
   misheard or missing phase. A past landmark not matched yet costs nothing while it is
   still ahead and ``SKIP`` once the running cycle is clearly past it: a quick wash that
   would have paused, or beeped, by now stops looking alike.
3. The past cycles closest to it are the ones "like" it: within ``TIGHT`` of the closest,
   else ``MARGIN``, else the closest ``MIN_PAST`` if they are not far off (else None: still
   learning). Each predicts the end from the last landmark it shares with the running
   cycle: "the spin began 8 min ago; in that cycle the beep came 12 min after it". Only the
   phases still to come add their jitter, not every phase before. The estimate is the
   median of those predictions, never earlier than now (an overrunning cycle ends "any
   moment now").

Smart-plug tools do the same from the power draw, mostly by correlating the whole trace so
far with stored ones, which a single long heating phase throws off; here each stretch is
compared on its own and the end is read from the latest landmark.

Times are seconds since the cycle's start (the daemon's `Phase` times minus the start).
Standard library only, and cheap: about 4 ms for 50 past cycles on a 2-core x86 VM, once a
minute (a Raspberry Pi is some 10 times slower).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from .events import PAUSE, Phase

log = logging.getLogger(__name__)

SPINNING = "spinning"

MIN_PAST = 3
"""Fewer past cycles than this (alike, for `estimate`) and there is no estimate."""
RECENT = 10
"""`usual_duration` is the median of the newest this many durations: a household changes
its habits (a new machine, a new baby), so old cycles should fade out."""
MAX_PAST = 50
"""`estimate` compares with the newest this many past cycles at most."""

QUIET_S = 60.0
"""Quiet since the last sound this long is a pause in progress (the cycle machine's default
``pause_minutes``): the daemon lists a pause only once the sound resumes."""
MIN_SPIN_S = 45.0
"""A spin shorter than this is not a landmark: a rough wash misheard as spinning for a few
windows must not look like a rinse spin."""

SKIP = 1.0
"""The cost of a landmark with no counterpart: a misheard or missing phase."""
REL = 0.12
"""How much a stretch between two landmarks may vary from one run of a programme to the
next: a phase jittered by ± 10 % in each of two runs differs by 7 % on average, up to 20 %.
A stretch one sigma off costs 0.5, two sigmas off (squared) as much as two skips ..."""
ABS_S = 30.0
"""... plus this much for the daemon's timing (a pause is seen a hop or two late)."""
RESYNC = 1.75 * SKIP
"""The most a match costs when its stretch is up to ``STRETCH`` times (plus ``STRETCH_S``)
as long or as short as the past one's: a phase that ran far longer than usual (cold water
to heat, a heavy load) is one surprise, and the landmarks after it match again from there
(cheaper than skipping both, so the alignment takes it). Further apart, the two do not
match at all: re-anchoring anywhere would make any programme look like this one."""
STRETCH = 2.0
STRETCH_S = 120.0
LOOKAHEAD = 1.3
"""Past landmarks later than this times the elapsed time (plus ``LOOKAHEAD_S``) can match
nothing heard yet: they are left out of the alignment, which keeps it cheap."""
LOOKAHEAD_S = 600.0
TIGHT = 0.5
"""Past cycles within this of the closest are "alike", if there are ``MIN_PAST`` of them: a
misheard phase in the running cycle costs every past cycle of its programme the same, so
these are its programme's cycles ..."""
MARGIN = 1.5
"""... else those within this (past cycles that ran unusually) ..."""
WIDE = 4.0
"""... else the closest ``MIN_PAST``, if none costs more than twice the closest plus this
(a misheard phase or two, more jitter than usual); further, the running cycle is like
nothing learned yet."""

QUIET, SOUND, SPIN, END = "quiet", "sound", "spin", "end"
_WHAT = {QUIET: "the pause began", SOUND: "the machine restarted after a pause",
         SPIN: "the spin began"}


@dataclass(frozen=True)
class PastCycle:
    duration: float
    """Seconds from the start to the beep."""
    phases: tuple[Phase, ...]
    """Its phases, times in seconds since its start."""


@dataclass(frozen=True)
class Estimate:
    total: float
    """The expected duration, seconds since the start (never less than ``elapsed``)."""
    remaining: float
    """Seconds from ``elapsed`` to the expected end; 0 is "any moment now"."""
    basis: int
    """How many past cycles it rests on."""
    how: str
    """A few words for the log and /status."""


class _Fit(NamedTuple):
    """How one past cycle fits the running one, and the end it predicts."""

    cost: float
    index: int
    """In ``past``: 0 is the newest."""
    total: float
    """The end it predicts, seconds since the running cycle's start."""
    anchor: float
    """When the last landmark both share was heard in the running cycle (0: none) ..."""
    after: float
    """... and how long the past cycle ran after it."""
    kind: str | None
    """That landmark's kind; None for none (the prediction is the past duration)."""


def usual_duration(past: Sequence[PastCycle]) -> float | None:
    """The median duration of the newest ``RECENT`` past cycles (newest first); None with
    fewer than ``MIN_PAST``."""
    recent = [p.duration for p in past[:RECENT]]
    if len(recent) < MIN_PAST:
        return None
    return statistics.median(recent)


def estimate(past: Sequence[PastCycle], elapsed: float, phases: Sequence[Phase]
             ) -> Estimate | None:
    """When the running cycle, ``elapsed`` seconds in with ``phases`` so far, will end,
    from the ``past`` cycles (newest first) that look like it; None with fewer than
    ``MIN_PAST`` alike (or fewer past cycles)."""
    past = list(past[:MAX_PAST])
    if len(past) < MIN_PAST:
        return None
    elapsed = max(0.0, elapsed)
    # No phases at all: the daemon tells none, so hearing no landmark says nothing.
    now = _landmarks(_with_open_pause(phases, elapsed)) if phases else None
    fits = []
    for i, p in enumerate(past):
        marks = sorted(_landmarks(p.phases) + [Mark(END, p.duration)], key=lambda m: m.at)
        cost, (tc, tp, kind) = _align(now, marks, elapsed)
        fits.append(_Fit(cost, i, tc + p.duration - tp, tc, p.duration - tp, kind))
    fits.sort(key=lambda f: (f.cost, f.index))
    best = fits[0].cost
    # The closest that are enough: a misheard phase (in this cycle or a past one) costs
    # every past cycle of a programme about the same, so within TIGHT of the closest
    # are the cycles of its programme, if there are enough of them.
    alike = [f for f in fits if f.cost <= best + TIGHT]
    if len(alike) < MIN_PAST:
        alike = [f for f in fits if f.cost <= best + MARGIN]
    if len(alike) < MIN_PAST:
        # Too few this close: a misheard phase or two in the next closest is no reason
        # to say nothing.
        alike = fits[:MIN_PAST]
        if alike[-1].cost > 2 * best + WIDE:
            log.debug("estimate: %d past cycles alike, %d needed",
                      sum(f.cost <= 2 * best + WIDE for f in fits), MIN_PAST)
            return None
    total = max(elapsed, statistics.median(f.total for f in alike))
    return Estimate(total, total - elapsed, len(alike), _how(alike, elapsed, total))


# --- Landmarks ----------------------------------------------------------------------------

class Mark(NamedTuple):
    kind: str
    """QUIET, SOUND, SPIN or END."""
    at: float


def _with_open_pause(phases: Sequence[Phase], elapsed: float) -> list[Phase]:
    """``phases`` with the pause in progress, if the machine has been quiet since the last
    one ended for ``QUIET_S`` (the daemon lists it only once the sound resumes)."""
    out = list(phases)
    if out and out[-1].name != PAUSE and elapsed - out[-1].end >= QUIET_S:
        out.append(Phase(PAUSE, out[-1].end, elapsed))
    return out


def _landmarks(phases: Sequence[Phase]) -> list[Mark]:
    """The landmarks of a cycle's phases, in time order."""
    marks: list[Mark] = []
    spinning = False  # the last sound was a spin (a pause between two spins keeps it)
    for i, p in enumerate(phases):
        if p.name == PAUSE:
            marks.append(Mark(QUIET, p.start))
            if i + 1 < len(phases):  # the last one is in progress, or the quiet before the beep
                marks.append(Mark(SOUND, p.end))
        elif p.name == SPINNING and p.seconds >= MIN_SPIN_S:
            if not spinning:
                marks.append(Mark(SPIN, p.start))
            spinning = True
        else:
            spinning = spinning and p.name == SPINNING
    marks.sort(key=lambda m: m.at)
    return marks


# --- Alignment ----------------------------------------------------------------------------

_LAG = {QUIET: QUIET_S, SPIN: MIN_SPIN_S}


def _sigma(interval: float) -> float:
    return REL * interval + ABS_S


def _differ(now: float, then: float) -> float:
    """The cost of matching two landmarks ``now`` and ``then`` after their previous match."""
    d = (abs(now - then) / _sigma(max(now, then))) ** 2 / 2
    if d <= RESYNC:
        return d
    if min(now, then) * STRETCH + STRETCH_S >= max(now, then):
        return RESYNC
    return math.inf


def _align(now: list[Mark] | None, marks: list[Mark], elapsed: float
           ) -> tuple[float, tuple[float, float, str | None]]:
    """The cost of the best alignment of the running cycle's landmarks ``now`` with a past
    cycle's ``marks`` (time order, the beep last), and its anchor: (time in the running
    cycle, time in the past one, kind) of the last landmark they share, (0, 0, None) for
    none. ``now`` None (nothing known of its phases) compares the durations only.
    """
    if now is None:
        now, marks = [], [m for m in marks if m.kind == END]
    limit = elapsed * LOOKAHEAD + LOOKAHEAD_S
    inner = [m for m in marks if m.at <= limit]  # a prefix: marks are in time order
    n, m = len(now), len(inner)
    start = (0.0, 0.0, None)
    # cost[j], anchor[j]: the row for the current landmarks so far, over past prefixes
    # (an edit distance kept one row at a time). Past landmarks skipped before a later
    # match should have been heard: full SKIP.
    cost = [j * SKIP for j in range(m + 1)]
    anchor: list[tuple[float, float, str | None]] = [start] * (m + 1)
    for i in range(n):
        kind, tc = now[i]
        new_cost = [cost[0] + SKIP] + [0.0] * m
        new_anchor = [anchor[0]] + [start] * m
        for j in range(1, m + 1):
            # A landmark heard now with no counterpart there ...
            c, a = cost[j] + SKIP, anchor[j]
            # ... one there with none here ...
            if new_cost[j - 1] + SKIP < c:
                c, a = new_cost[j - 1] + SKIP, new_anchor[j - 1]
            # ... or the two match.
            pk, tp = inner[j - 1]
            if pk == kind:
                ac, ap, _ = anchor[j - 1]
                d = _differ(tc - ac, tp - ap)
                if cost[j - 1] + d <= c:
                    c, a = cost[j - 1] + d, (tc, tp, kind)
            new_cost[j], new_anchor[j] = c, a
        cost, anchor = new_cost, new_anchor
    # The past landmarks after the alignment's end: free while still ahead, SKIP once the
    # running cycle is a sigma past where it would have heard them.
    best, best_anchor = math.inf, start
    for j in range(m + 1):
        if cost[j] >= best:
            continue
        ac, ap, _ = anchor[j]
        late = 0.0
        for kind, tp in marks[j:]:
            # A pause shows QUIET_S after it began, a spin MIN_SPIN_S; the rest at once.
            due = ac + (tp - ap) + _LAG.get(kind, 0.0)
            if elapsed > due:
                late += SKIP * min(1.0, (elapsed - due) / _sigma(tp - ap))
        if cost[j] + late < best:
            best, best_anchor = cost[j] + late, anchor[j]
    return best, best_anchor


# --- Words --------------------------------------------------------------------------------

def _minutes(seconds: float) -> str:
    return f"{max(0, round(seconds / 60))} min"


def _how(alike: list[_Fit], elapsed: float, total: float) -> str:
    """E.g. "the spin began 8 min ago; the end came 12 min after it in cycles like this
    (4 of your last 5)"."""
    newest = max(f.index for f in alike) + 1
    share = (f"your last {newest}" if newest == len(alike)
             else f"{len(alike)} of your last {newest}")
    if total <= elapsed:
        return f"past the end of cycles like this ({share}): any moment now"
    # The landmark most of them are anchored on says what the estimate rests on.
    anchors = [(f.anchor, f.kind or "") for f in alike]
    at, kind = max(sorted(set(anchors)), key=anchors.count)
    if not kind:
        return f"like {share} cycles"
    after = statistics.median(f.after for f in alike if (f.anchor, f.kind) == (at, kind))
    return (f"{_WHAT[kind]} {_minutes(elapsed - at)} ago; the end came {_minutes(after)} "
            f"after it in cycles like this ({share})")
