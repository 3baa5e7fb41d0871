"""The specialised model: the model in use with a new beep row in its head, fitted in numpy.

BeepNet's classifier is a 1x1 convolution over [time max, time mean] of its body features
for the clip (and [frame, time mean] for each frame). Keeping the body and every other
class's row, P(beep) is a logistic regression on the 2 x channels clip features whose
offset is the fixed log-sum-exp of the other classes' logits: fitting the beep row is a few
seconds of body features and a Newton solve, no torch, well within a minute on a Pi.

The fit is pulled towards the old beep row rather than towards zero (an L2 penalty on the
difference): with a few dozen beeps and a couple of minutes of one room, what the model in
use learned about speech, music and other machines stays unless the owner's clips say
otherwise, and it starts from exactly the model in use.

The new file is an ordinary BeepNet model file (the same architecture and classes, the
body copied), so the daemon, `beepnet detect` and `beepnet model info` read it unchanged.
Its threshold is `MARGIN` logits above the highest-scoring "other" clip it learned from,
and at most `TIMBRE_CHECKED_MAX` when the detector also checks the beep's timbre; but
`AT_PITCH_MARGIN` above every window of the owner's room that the detector's pitch check
passes (a note of the radio at the beep's very pitch, with its harmonics: only the head's
score stops that one), as far as `THRESHOLD_RANGE` and the beep clips' median allow. The
room is looked at window by window, as the daemon cuts it, not through the random crops
the head learns from: a sound that comes once in half an hour of the room comes twice an
hour afterwards, and 320 crops of half an hour miss a half-second note about as often as
not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from ..model.modelfile import POSITIVE, STEADY_WOBBLE_HZ, ModelFile, write_model_file
from ..model.npnet import NumpyBeepNet

log = logging.getLogger(__name__)

PRIOR_PULL = 0.02
"""Strength of the pull towards the old head, per clip of training data."""
NEWTON_STEPS = 30
THRESHOLD_RANGE = (0.2, 0.95)
TIMBRE_CHECKED_MAX = 0.7
"""The highest threshold when every beep pitch has its timbre (`detectors.timbre`): the
head's score then only has to say "a beep-like sound", the pitch and the harmonics say
whose. On `make bench-realuser` (seed 1400, scored offline, 0.5-0.9 tried with the timbre
check) the three machines kept 0.97-1.00 of their beep windows at 0.95, 0.98-1.00 at 0.9
and 0.99-1.00 from 0.7 down, with 7, 8, 11 and 15 false alarms in 12 hours at 0.95, 0.9,
0.7 and 0.5."""
MARGIN = 1.5
"""Logits between the highest-scoring "other" clip learned from and the threshold: sounds
the head never saw (a new tune on the TV) score higher than those it learned from."""
AT_PITCH_MARGIN = 0.5
"""Logits between the highest-scoring room window that passes the pitch check and the
threshold. The head does not learn from those windows, so they score as the room's next
such sounds will, not lower (`MARGIN`'s reason); the half logit keeps near-ties out. On
`make bench-realuser`'s twelve machines (2026-12-06, scored offline) 0 and 0.5 gave the
same alerts and misses; 1.5 missed 5 more beeps on two machines and stopped no alarm
more."""


def clip_features(net: NumpyBeepNet, clips: Iterable[np.ndarray]) -> np.ndarray:
    """(clips, 2 x channels): each clip's [time max | time mean] of the body's features."""
    rows = []
    for x in clips:
        h = net.features(np.asarray(x, np.float32))
        rows.append(np.concatenate([h.max(axis=0), h.mean(axis=0)]))
    return np.asarray(rows, np.float64)


def old_head(mf: ModelFile) -> tuple[np.ndarray, np.ndarray, int]:
    """The classifier's rows (classes, 2 x channels), biases and the beep class's index."""
    w = mf.tensors["classifier.weight"][:, :, 0].astype(np.float64)
    return w, mf.tensors["classifier.bias"].astype(np.float64), mf.labels.index(POSITIVE)


def fit_logistic(z: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float,
                 pull: float = PRIOR_PULL, offset: np.ndarray | None = None
                 ) -> tuple[np.ndarray, float]:
    """Weights and bias of a logistic regression, classes weighted equally, penalised by
    ``pull`` x clips x |w - w0|^2 / 2; Newton's method (the problem is small and convex)."""
    n, d = z.shape
    pos = y > 0.5
    c = np.where(pos, 0.5 * n / max(1, pos.sum()), 0.5 * n / max(1, (~pos).sum()))
    a = np.hstack([z, np.ones((n, 1))])
    theta = np.append(w0, b0)
    prior = theta.copy()
    reg = np.full(d + 1, pull * n)
    reg[-1] = 1e-4 * n  # the bias is nearly free
    off = np.zeros(n) if offset is None else offset

    def loss(t: np.ndarray) -> float:
        s = a @ t + off
        # log(1 + e^s) - y s, computed without overflow.
        return float(c @ (np.logaddexp(0.0, s) - y * s)
                     + 0.5 * reg @ np.square(t - prior))

    current = loss(theta)
    for step in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ theta + off, -50, 50)))
        grad = a.T @ (c * (p - y)) + reg * (theta - prior)
        hess = (a * (c * p * (1 - p))[:, None]).T @ a + np.diag(reg)
        delta = np.linalg.solve(hess, grad)
        # Newton's full step can overshoot where the fit saturates: halve until it helps.
        size = 1.0
        while size > 1e-4 and loss(theta - size * delta) > current:
            size *= 0.5
        theta = theta - size * delta
        previous, current = current, loss(theta)
        if previous - current < 1e-9 * max(1.0, abs(current)):
            break
    log.debug("head fitted in %d Newton step(s)", step + 1)
    return theta[:-1], float(theta[-1])


def threshold_between(neg_logits: np.ndarray, pos_logits: np.ndarray,
                      highest: float = THRESHOLD_RANGE[1], margin: float = MARGIN) -> float:
    """P(beep) ``margin`` logits above the highest "other" clip, from `THRESHOLD_RANGE`'s
    low end to ``highest``; but never above the beep clips' median (a head that cannot
    tell them apart still hears most beeps)."""
    t = min(float(np.max(neg_logits)) + margin, float(np.median(pos_logits)))
    return float(np.clip(1.0 / (1.0 + np.exp(-t)), THRESHOLD_RANGE[0], highest))


@dataclass(frozen=True)
class Head:
    """The old classifier with a new beep row: P(beep) = sigmoid(w.z + b - LSE(others))."""

    weights: np.ndarray
    """(classes, 2 x channels) over [features | time mean]."""
    biases: np.ndarray
    beep: int
    threshold: float
    room_at_pitch: int = 0
    """How many windows of the room learned from the detector's pitch check passes."""

    def logits(self, z: np.ndarray) -> np.ndarray:
        """The log-odds of beep for each row of clip features."""
        every = z @ self.weights.T + self.biases
        mine = every[:, self.beep]
        rest = np.delete(every, self.beep, axis=1)
        top = rest.max(axis=1)
        return mine - (top + np.log(np.exp(rest - top[:, None]).sum(axis=1)))


def refit_beep_row(base: ModelFile, zp: np.ndarray, zn: np.ndarray, pull: float) -> Head:
    """The old classifier with its beep row refitted on clip features of beeps (``zp``) and
    of other sounds (``zn``), pulled towards the old row by ``pull``; threshold 0.5."""
    z = np.vstack([zp, zn])
    y = np.concatenate([np.ones(len(zp)), np.zeros(len(zn))])
    w, b, beep = old_head(base)
    old = Head(w, b, beep, 0.5)
    # The other classes' rows stay: their log-sum-exp is a fixed offset per clip.
    offset = old.logits(z) - (z @ w[beep] + b[beep])
    w_new, b_new = fit_logistic(z, y, w[beep], float(b[beep]), pull, offset)
    w, b = w.copy(), b.copy()
    w[beep], b[beep] = w_new, b_new
    return Head(w, b, beep, 0.5)


def fit_head(base: ModelFile, net: NumpyBeepNet, beeps: Iterable[np.ndarray],
             others: Iterable[np.ndarray], pull: float = PRIOR_PULL,
             highest: float = THRESHOLD_RANGE[1], at_pitch: Sequence[np.ndarray] = ()
             ) -> Head:
    """The new head and its threshold (`threshold_between` the "other" clips and the beeps,
    up to ``highest``). ``at_pitch``: windows of the room that the detector's pitch check
    passes; the threshold goes above them too (`AT_PITCH_MARGIN`), past ``highest`` if
    need be, up to `THRESHOLD_RANGE`'s top and the beep clips' median."""
    zp, zn = clip_features(net, beeps), clip_features(net, others)
    head = refit_beep_row(base, zp, zn, pull)
    lp = head.logits(zp)
    threshold = threshold_between(head.logits(zn), lp, highest)
    if len(at_pitch):
        threshold = max(threshold, threshold_between(
            head.logits(clip_features(net, at_pitch)), lp, margin=AT_PITCH_MARGIN))
    return replace(head, threshold=threshold, room_at_pitch=len(at_pitch))


def write_enrolled(path, base: ModelFile, head: Head, *, metrics: dict, data_sha256: str,
                   beep_pitches_hz: list[float] | tuple[float, ...] = (),
                   beep_timbre: list | tuple = (), beep_min_notes: int = 1,
                   beep_wobble_hz: float = STEADY_WOBBLE_HZ) -> None:
    """The base model with ``head`` as its classifier (same classes, a new beep row), and
    the machine's beep pitches (`find.beep_pitches`), their timbres (`find.beep_timbres`),
    how many of its notes a window must hold (`find.min_notes`) and how much its pitch
    wobbles (`find.beep_wobble`), which the detector then checks."""
    tensors = dict(base.tensors)
    tensors["classifier.weight"] = head.weights[:, :, None].astype(np.float32)
    tensors["classifier.bias"] = head.biases.astype(np.float32)
    write_model_file(path, tensors, base.arch, list(base.labels), head.threshold,
                     metrics=metrics, data_sha256=data_sha256,
                     window_seconds=float(base.meta.get("window_seconds", 3.0)),
                     hop_seconds=float(base.meta.get("hop_seconds", 1.5)),
                     beep_pitches_hz=beep_pitches_hz, beep_timbre=beep_timbre,
                     beep_min_notes=beep_min_notes, beep_wobble_hz=beep_wobble_hz)
