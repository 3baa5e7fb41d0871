"""The owner's corrections as training data: ``beepnet train --feedback`` (and ``/retrain``).

Every answer under an alert (✅ / ❌) and every clip labelled from ``/missed``
(``beepnet label --unsure``) is a 3-s window under ``storage.dir/feedback/<label>/``, named
``<alert time>_<sample>.wav`` (beepnet.notify.feedback). They are few (a few windows an
alert) and they are the best data this product sees: the owner's machine, room and
microphone. So retraining

- starts from the model in use (the enrolled or retrained one when there is one, else the
  shipped model): it already knows beeps, and a few epochs at a third of the learning rate
  keep that;
- learns the corrections together with other labelled clips ("replay": a generated set by
  default, or any DATA_DIR), so that a dozen "not the beep" windows do not become the
  whole world; the corrections are repeated to make about `OWNER_SHARE` of every epoch;
- holds out whole alerts (never a window of an alert on both sides) to decide whether the
  new model is better: `owner_split`. The new model is put in use only when it is not worse
  on the owner's held-out alerts and at most `REPLAY_TOLERANCE` worse on the replay's
  held-out clips (`beepnet.training.train._save_unless_worse`);
- keeps the start model's threshold (it was set on real negatives, or on the owner's room by
  `beepnet enroll`; a few hundred validation clips cannot set a false-alarm rate) and its
  enrolled beep pitches, when it has them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

OWNER_SHARE = 0.25
"""Share of each epoch's clips that are the owner's (by repeating them)."""
MAX_REPEAT = 20
"""At most this many copies of a correction an epoch: a handful of windows repeated more
would be learned by heart."""
VAL_SHARE = 0.25
"""Share of the owner's alerts (per label) held out to judge the new model."""
REPLAY_CLIPS = 1500
"""Generated clips learned beside the corrections when no DATA_DIR is given (about 25 s to
generate on 2 x86 cores, 2 minutes on a Pi 4; written to a temporary folder)."""
REPLAY_SEED = 7
REPLAY_TOLERANCE = 0.02
"""The new model may make this share of the replay's held-out clips more mistakes than the
model in use (at least 1): learning the owner's machine may cost a generated clip or two,
never the owner's own."""


class CorrectionsError(Exception):
    """No usable corrections; ``str()`` is one line for the owner."""


def owner_split(alerts: np.ndarray, labels: np.ndarray, seed: int,
                share: float = VAL_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of the owner's windows; whole alerts, per label.

    Of each label's alerts about ``share`` are held out (at least one, never all): a label
    with a single alert stays wholly in training, and then nothing of it is held out."""
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for label in sorted(set(labels.tolist())):
        mine = sorted(set(alerts[labels == label].tolist()) - held)
        if len(mine) < 2:
            continue
        k = min(len(mine) - 1, max(1, round(len(mine) * share)))
        held.update(rng.permutation(mine)[:k].tolist())
    in_val = np.isin(alerts, list(held))
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def repeats(n_owner: int, n_replay: int, share: float = OWNER_SHARE,
            cap: int = MAX_REPEAT) -> int:
    """Copies of each owner clip an epoch so that they make about ``share`` of it."""
    if n_owner == 0:
        return 0
    want = share / (1 - share) * n_replay / n_owner
    return int(min(cap, max(1, math.ceil(want))))


def make_replay(out_dir: Path, n: int = REPLAY_CLIPS, seed: int = REPLAY_SEED) -> Path:
    """Generate the replay set (the generator's ``train`` preset) into ``out_dir``."""
    from .dataset import generate

    log.info("generating %d replay clips in %s", n, out_dir)
    generate(out_dir, n, seed, "train")
    return out_dir
