"""The machine's ear: from the classifier's verdict on each window to what the cycle machine
hears (`Heard`): was that the machine running, and in which phase.

The daemon scores every window that opens the silence gate (3 s, one every 1.5 s) and hands
`MachineEar.hear` its class probabilities; the ear keeps a little history of its own.
Standard library only, a few dozen operations a window: it runs in the daemon on a Pi.

Machine sound: the classifier's "washer" probability at ``machine_score`` (0.5: more likely
the machine than anything else) or more, or, for a spin whining through a room, "washer" at
`WHINE_WASHER` or more with "washer", "tonal" and "beep" together at `WHINE_SHARE` or more
(one generated room and microphone made a full-speed spin "tonal" in half its windows).
Measured with the shipped model on the daemon's windows: generated washers (wash, drain,
spin; RMS -46 to -16 dBFS, dry and through rooms) are machine in 99-100 % of their windows
(a drain at -46 dBFS: 95 %); in 24 generated cycles (`beepnet.testing.cycles`) the drum was
in 99.8 % (per cycle 96-100 %; water coming in, which the model never learnt, in 48 %);
generated speech, music, tonal sounds, fans, knocks and doors in 0 %; real recordings
training never used (talk, TV, kitchen clatter, chimes, alarms, notes; -40 to -20 dBFS) in
0 %, except real music: 1.0 % of its windows (2.0 % through a room; at most 12 windows in
a row, 18 s), far from the cycle machine's ``start_minutes`` (2) of sound within 5
minutes. Two things hide the machine:

- a beep over it: the "washer" probability falls to near 0 (washer >= 0.5 in 5-14 % of
  such windows over a running machine). A window the classifier calls a beep (``beep`` >=
  `BEEP_SCORE`) right after machine sound (no window missed in between) is machine sound
  too, for up to `BEEP_HOLD_SECONDS` after the last window really heard as the machine: a
  machine beeping (a key press, its end signal over the coast-down) has not stopped. An end
  beep after the machine went quiet is not machine sound.
- someone talking over it: washer >= 0.5 in only 8-47 % of such windows. Left as it is:
  the cycle machine needs a minute without machine sound to call a pause, and talk ends;
  holding the machine through talk would keep it "running" through a conversation after it.

Phase: "spinning" or "washing". Water coming in, the drum turning and draining are all
"washing" (the water phases): a drain is short, its pump and gurgle sound like neither a
spin nor a wash, and a third name would be one more thing for the history to learn. A spin
whines (the motor, its pitch rising with the drum's speed); a wash knocks and splashes.
What the classifier does not give "washer" shows which: the whine index of a window,

    log10(beep) + log10(tonal) + log10(music) - 2 log10(other)

(each at least `FLOOR`), rises when the left-over probability goes to the tonal classes
(a steady harmonic tone) rather than to "other" (knocks, splashes). On generated cycles its
median is 1.7-2.6 higher in a spin than in a wash of the same cycle, but where a cycle's
wash lies (-3.3 to -1.7) moves with the room and the microphone, so the ear compares it
with its own reference: the `REFERENCE_QUANTILE` of the index over the last
`REFERENCE_WINDOWS` windows of machine sound (cycles are mostly washing: the low part is
the wash), or `PRIOR_REFERENCE` (the generated cycles' wash) until it has
`REFERENCE_MIN_WINDOWS`. The mean index of the last `PHASE_WINDOWS` windows heard one hop
after another (a missed window, a rest or a beep in between starts over), less the
reference, decides: `SPIN_ABOVE` or more, `SPIN_CONFIRM` times in a row, is "spinning";
`WASH_BELOW` or less is "washing"; in between, or with too few windows, None (unsure: the
cycle machine keeps the phase it was in).

Measured on the 24 generated cycles (11 to 93 minutes of audio, -10 to +6 dB, rooms), the
phase the cycle machine then keeps was right in 96 % of the windows heard in spins and 93 %
of those in the water phases (98 % washing, 81 % draining, 50 % filling); per cycle 86-100 %
and 85-98 %. On the 6 cycles made after the rule was chosen: 96.5 % and 94 %. The misses are
the 10-20 s after each change, drains and fills next to a spin taken for the spin, and
about one stray phase change in two cycles. Neither the level nor how steady it is made a
rule that held: a generated spin's loudest frame is not louder than a wash's knocks (median
within 2 dB), and a rule on steadiness (the loudest frame's mean step from window to
window) and a fixed, not relative, tonality threshold, right in 92 % of spins on the 10
cycles it was chosen on, was right in 60 % on the next 6. Real washers were not measured
(none among the real recordings): whether the model hears a real spin's whine as it hears
the generated one is untested.

The thresholds fit the shipped model and the daemon's windows (3 s every 1.5 s): another
model leans its left-over probability differently.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from collections.abc import Mapping

from .events import Heard

log = logging.getLogger(__name__)

WASHING = "washing"
SPINNING = "spinning"

MACHINE_SCORE = 0.5
"""The "washer" probability from which a window is machine sound."""
WHINE_WASHER = 0.1
WHINE_SHARE = 0.8
"""A window with this "washer" probability or more, and this much of it and "tonal" and
"beep" together, is machine sound too: a spin whining through a room."""
BEEP_SCORE = 0.5
"""A window with this "beep" probability or more hides what is under it."""
BEEP_HOLD_SECONDS = 20.0
"""A beep right after machine sound counts as the machine for at most this long after the
last window heard as the machine: the longest end-of-cycle pattern (5 beeps of up to 1 s,
up to 1 s apart) and its echo."""

FLOOR = 1e-6
"""Under every probability in the whine index: a class the model gives next to nothing
counts as this little, not as minus infinity."""
PHASE_WINDOWS = 6
"""Windows the phase is judged on (9 s at the 1.5-s hop): 8 or 10 followed a change later
and were no more often right."""
SPIN_ABOVE = 1.8
WASH_BELOW = 1.0
"""The whine index over the reference that says spinning, and the one that says washing;
between them the ear is unsure."""
SPIN_CONFIRM = 3
"""Judgements in a row that must say "spinning" before the ear does: a wash has short
whining stretches too, a spin lasts minutes."""
REFERENCE_QUANTILE = 0.3
REFERENCE_WINDOWS = 1600
"""Windows of machine sound the reference is taken from: 40 minutes of it, most of a long
cycle, whose final spin (10-15 min) stays above the quantile."""
REFERENCE_MIN_WINDOWS = 40
"""A minute of machine sound before the reference is the ear's own."""
PRIOR_REFERENCE = -2.7
"""The reference until then: the median whine index of washing in the generated cycles."""


def whine_index(labels: Mapping[str, float]) -> float:
    """How much of what is not "washer" went to the tonal classes rather than to "other"."""
    def lg(name: str) -> float:
        return math.log10(max(labels.get(name, 0.0), FLOOR))

    return lg("beep") + lg("tonal") + lg("music") - 2 * lg("other")


class MachineEar:
    """Turns each scored window into a `Heard`, in time order.

    ``machine_score``: the "washer" probability from which a window is machine sound.
    ``hop_seconds``: the daemon's hop; a longer wait between two windows of machine sound
    (more than 1.5 hops) means a window was missed: the sound was not continuous.
    """

    def __init__(self, machine_score: float = MACHINE_SCORE, *, hop_seconds: float = 1.5):
        if not 0 < machine_score <= 1:
            raise ValueError(f"machine score {machine_score}: expected more than 0, "
                             "up to 1")
        if not hop_seconds > 0:
            raise ValueError(f"hop {hop_seconds} s: expected more than 0")
        self.machine_score = machine_score
        self._gap = 1.5 * hop_seconds
        self._recent: deque[float] = deque(maxlen=PHASE_WINDOWS)
        """Whine index of the latest machine windows heard one hop apart."""
        self._spin_run = 0
        """Judgements in a row that said spinning."""
        self._history: deque[float] = deque()
        self._sorted: list[float] = []
        """The whine index of the last REFERENCE_WINDOWS machine windows, in time order and
        sorted (for the quantile)."""
        self._heard_at: float | None = None
        """The last window heard as the machine (not held through a beep)."""
        self._machine_at: float | None = None
        """The last window told as the machine (held ones too)."""

    def hear(self, at: float, labels: Mapping[str, float], peak_dbfs: float) -> Heard:
        """What the window centred on ``at`` (cycle seconds) was. ``peak_dbfs`` is not used
        (see the module's text); it is taken so that a rule using it changes no caller."""
        if self._machine(labels):
            phase = self._phase(at, whine_index(labels))
            self._heard_at = self._machine_at = at
            return Heard(at, True, phase)
        if (labels.get("beep", 0.0) >= BEEP_SCORE and self._machine_at is not None
                and self._heard_at is not None and at - self._machine_at <= self._gap
                and at - self._heard_at <= BEEP_HOLD_SECONDS):
            self._machine_at = at
            return Heard(at, True, None)
        return Heard(at, False, None)

    def _machine(self, labels: Mapping[str, float]) -> bool:
        washer = labels.get("washer", 0.0)
        if washer >= self.machine_score:
            return True
        # A spin's whine pulls the probability to the tonal classes (see the module's text).
        whine = washer + labels.get("tonal", 0.0) + labels.get("beep", 0.0)
        return washer >= WHINE_WASHER and whine >= WHINE_SHARE

    def reference(self) -> float:
        """The whine index of this machine's washing, as far as the ear can tell."""
        if len(self._sorted) < REFERENCE_MIN_WINDOWS:
            return PRIOR_REFERENCE
        return self._sorted[int(REFERENCE_QUANTILE * len(self._sorted))]

    def _phase(self, at: float, index: float) -> str | None:
        if self._heard_at is not None and at - self._heard_at > self._gap:
            # Not continuous: a rest, a pause, a beep or talk in between.
            self._recent.clear()
            self._spin_run = 0
        self._recent.append(index)
        self._remember(index)
        if len(self._recent) < PHASE_WINDOWS:
            return None
        above = sum(self._recent) / PHASE_WINDOWS - self.reference()
        if above >= SPIN_ABOVE:
            self._spin_run += 1
            return SPINNING if self._spin_run >= SPIN_CONFIRM else None
        self._spin_run = 0
        return WASHING if above <= WASH_BELOW else None

    def _remember(self, index: float) -> None:
        if len(self._history) == REFERENCE_WINDOWS:
            old = self._history.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._history.append(index)
        bisect.insort(self._sorted, index)
