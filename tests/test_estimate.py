"""The time-left estimate on made-up cycle timelines: no audio, no clock.

A programme is a list of (phase, minutes) steps; `run` makes one run of it with every step
jittered (seeded) and returns it as a past cycle; `heard` cuts a run at ``elapsed`` as the
daemon would have logged it by then (a pause in progress not listed yet).
"""

from __future__ import annotations

import random
import statistics
import time

from beepnet.bench import cycles as bench
from beepnet.bench.report import CYCLE_ESTIMATE_ERROR
from beepnet.cycle.estimate import MIN_PAST, RECENT, PastCycle, estimate, usual_duration
from beepnet.cycle.events import PAUSE, UNKNOWN, Phase

MIN = 60.0
W, P, S = "washing", PAUSE, "spinning"
QUICK = [(W, 12), (P, 1.5), (S, 2.5), (W, 5), (P, 1.5), (S, 5), (P, 1.5)]          # 29 min
COTTON = [(W, 4), (P, 2), (W, 34), (P, 2), (S, 3), (W, 9), (P, 1.5), (S, 3), (W, 9),
          (P, 1.5), (S, 10), (P, 1.5)]                                               # 80.5
ECO = [(W, 5), (P, 10), (W, 30), (P, 12), (W, 45), (P, 2), (S, 4), (W, 12), (P, 2),
       (S, 12), (P, 3)]                                                              # 137


def run(steps, rng: random.Random, jitter: float = 0.10, longer: dict | None = None,
        unheard: set[int] = frozenset(), name_sound: str | None = None) -> PastCycle:
    """One run of ``steps``: each jittered by ± ``jitter``; ``longer`` {step: extra
    minutes}; the pauses at the indices in ``unheard`` taken for the sound before them;
    ``name_sound`` renames every sound phase (UNKNOWN: a daemon that tells no phases)."""
    stretches: list[tuple[str, float]] = []
    for i, (name, minutes) in enumerate(steps):
        seconds = (minutes + (longer or {}).get(i, 0)) * MIN * rng.uniform(1 - jitter,
                                                                          1 + jitter)
        if i in unheard:
            name = stretches[-1][0]
        if name != PAUSE and name_sound:
            name = name_sound
        stretches.append((name, seconds))
    return bench.logged(stretches)


# The phases the daemon has logged so far into a cycle: as the benchmark reads them.
heard = bench.so_far


def history(rng: random.Random, *programmes, each: int = 3, **kw) -> list[PastCycle]:
    """``each`` runs of every programme, interleaved, newest first."""
    return [run(p, rng, **kw) for _ in range(each) for p in programmes]


def error(e, truth: float) -> float:
    return abs(e.total - truth) / truth


CLOSE = 0.08
"""A good estimate is this close to the truth (a share of the cycle's length). Runs jitter
every step by ± 10 %, so the phases still to come alone make a few % of error; the median of
all past durations is 30-50 % off in a mixed household."""


# --- usual_duration -----------------------------------------------------------------------

def test_usual_duration_is_the_median_of_the_recent_ones():
    rng = random.Random(1)
    past = [run(COTTON, rng) for _ in range(MIN_PAST - 1)]
    assert usual_duration(past) is None                      # still learning
    past.append(run(COTTON, rng))
    assert usual_duration(past) == statistics.median(p.duration for p in past)
    # Old habits fade: past RECENT cycles, the oldest no longer count.
    old = [run(ECO, rng) for _ in range(RECENT)]
    assert usual_duration(past + [run(QUICK, rng) for _ in range(RECENT - 3)] + old
                          ) < 60 * MIN


# --- estimate -----------------------------------------------------------------------------

def test_too_little_history_gives_no_estimate():
    rng = random.Random(2)
    now = run(COTTON, rng)
    for n in range(MIN_PAST):
        past = [run(COTTON, rng) for _ in range(n)]
        assert estimate(past, now.duration / 2, heard(now, now.duration / 2)) is None
    past = [run(COTTON, rng) for _ in range(MIN_PAST)]
    assert estimate(past, now.duration / 2, heard(now, now.duration / 2)) is not None


def test_one_programme_half_way():
    rng = random.Random(3)
    past = [run(COTTON, rng) for _ in range(5)]
    now = run(COTTON, rng)
    elapsed = now.duration / 2
    e = estimate(past, elapsed, heard(now, elapsed))
    assert e is not None and e.basis >= MIN_PAST   # the closest that are enough, up to 5
    assert error(e, now.duration) < CLOSE
    assert e.remaining == e.total - elapsed > 0
    assert f"{e.basis} of your last" in e.how or f"your last {e.basis}" in e.how, e.how


def test_mixed_programmes_each_is_told_from_its_own_past():
    rng = random.Random(4)
    past = history(rng, QUICK, COTTON, ECO, each=4)
    durations = [p.duration for p in past]
    for steps, at in ((QUICK, 0.5), (COTTON, 0.5), (ECO, 0.5), (COTTON, 0.75),
                      (ECO, 0.3)):
        now = run(steps, rng)
        elapsed = at * now.duration
        e = estimate(past, elapsed, heard(now, elapsed))
        assert e is not None, (steps, at)
        # Its own programme's cycles (4 of the last 12), or the closest 3 of them.
        assert 3 <= e.basis <= 4 and f"{e.basis} of your last" in e.how, (e, steps, at)
        assert error(e, now.duration) < CLOSE, (e, now.duration, steps, at)
        # What that buys: the median of all durations is a cotton's, far off for the others.
        if steps is not COTTON:
            assert abs(statistics.median(durations) - now.duration) / now.duration > 0.3


def test_once_the_final_spin_began_the_end_is_read_from_the_spin():
    """A wash that ran 20 min long (cold water, a heavy load): the cycle's end follows its
    final spin as usual, not the usual total."""
    rng = random.Random(5)
    past = [run(COTTON, rng, jitter=0.02) for _ in range(5)]
    now = run(COTTON, rng, jitter=0.02, longer={2: 20})
    spin = [p for p in now.phases if p.name == S][-1]
    elapsed = spin.start + 2 * MIN
    e = estimate(past, elapsed, heard(now, elapsed))
    assert e is not None
    usual_after = statistics.median(p.duration - [q for q in p.phases if q.name == S][-1].start
                                    for p in past)
    assert abs(e.total - (spin.start + usual_after)) < 1 * MIN
    assert abs(e.total - now.duration) < 1.5 * MIN
    assert abs(usual_duration(past) - now.duration) > 15 * MIN   # the usual total is not
    assert e.how.startswith(f"the spin began 2 min ago; the end came "
                            f"{round(usual_after / MIN)} min after it"), e.how


def test_overrunning_every_past_cycle_is_any_moment_now():
    rng = random.Random(6)
    past = [run(COTTON, rng) for _ in range(5)]
    longest = max(p.duration for p in past)
    now = run(COTTON, rng, longer={10: 15})                  # the final spin goes on
    for elapsed in (longest + MIN, longest + 10 * MIN, 2 * longest):
        e = estimate(past, elapsed, heard(now, elapsed))
        assert e is not None
        assert e.remaining >= 0 and e.total >= elapsed
        assert e.remaining < 5 * MIN
    e = estimate(past, 2 * longest, heard(now, 2 * longest))
    assert e.remaining == 0 and e.total == 2 * longest and "any moment now" in e.how


def test_a_pause_in_progress_counts_before_the_daemon_lists_it():
    """Eco soaks, quiet, from 5 min: the daemon lists that pause only when the sound comes
    back, but 4 min into it, the quick wash (no pause before 12 min) is already unlike."""
    rng = random.Random(11)
    past = history(rng, QUICK, ECO, each=4)
    now = run(ECO, rng)
    soak = now.phases[1]
    elapsed = soak.start + 4 * MIN
    phases = heard(now, elapsed)
    assert phases[-1].name == W and phases[-1].end == soak.start   # not listed yet
    e = estimate(past, elapsed, phases)
    assert e is not None and error(e, now.duration) < CLOSE, (e, now.duration)
    assert e.how.startswith("the pause began 4 min ago"), e.how


def test_a_missing_or_misheard_phase_still_finds_the_programme():
    rng = random.Random(7)
    past = history(rng, QUICK, COTTON, ECO, each=4)
    # The history holds a cotton run whose first pause went unheard, too.
    past[1] = run(COTTON, rng, unheard={1})
    cases = [
        run(COTTON, rng, unheard={3}),                       # the drain before the first spin
        run(COTTON, rng, unheard={1, 6}),                    # two pauses
        run(ECO, rng, unheard={3}),                          # the long heating pause
    ]
    for now in cases:
        elapsed = 0.6 * now.duration
        e = estimate(past, elapsed, heard(now, elapsed))
        assert e is not None and error(e, now.duration) < CLOSE, (e, now.duration)
        assert e.basis >= MIN_PAST
    # A wash stretch heard as spinning: 20 s of it is no landmark, 90 s is one too many;
    # neither moves the estimate.
    for seconds in (20, 90):
        now = run(COTTON, rng)
        wash = now.phases[2]
        mid = (wash.start + wash.end) / 2
        phases = (now.phases[:2] + (Phase(W, wash.start, mid), Phase(S, mid, mid + seconds),
                                    Phase(W, mid + seconds, wash.end)) + now.phases[3:])
        misheard = PastCycle(now.duration, phases)
        elapsed = 0.6 * now.duration
        e = estimate(past, elapsed, heard(misheard, elapsed))
        assert e is not None and error(e, now.duration) < CLOSE, (seconds, e, now.duration)


def test_a_daemon_that_tells_no_phases_still_has_its_pauses():
    rng = random.Random(8)
    past = history(rng, QUICK, COTTON, ECO, each=4, name_sound=UNKNOWN)
    now = run(COTTON, rng, name_sound=UNKNOWN)
    elapsed = 0.5 * now.duration
    e = estimate(past, elapsed, heard(now, elapsed))
    assert e is not None and 3 <= e.basis <= 4 and error(e, now.duration) < CLOSE


def test_without_any_phase_only_durations_still_possible_count():
    rng = random.Random(9)
    past = history(rng, QUICK, COTTON, each=3)
    quick = max(p.duration for p in past if p.duration < 40 * MIN)
    # Past every quick wash: a cotton one.
    e = estimate(past, quick + 10 * MIN, ())
    assert e is not None and e.basis == 3
    cottons = [p.duration for p in past if p.duration > 40 * MIN]
    assert e.total == statistics.median(cottons)
    # Early on either could be running: all six (a cotton's first pause is past, but
    # nothing says it was not heard).
    assert estimate(past, 8 * MIN, ()).basis == 6


def test_fifty_past_cycles_take_milliseconds():
    rng = random.Random(10)
    past = history(rng, QUICK, COTTON, ECO, each=17)[:50]
    now = run(ECO, rng)
    phases = heard(now, now.duration / 2)
    best = min(_seconds(lambda: estimate(past, now.duration / 2, phases)) for _ in range(3))
    assert best < 0.1          # measured: 4 ms on a 2-core x86 VM; a Pi is ~10 times slower


def _seconds(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# --- The benchmark part -------------------------------------------------------------------

def test_the_cycles_bench_part_meets_its_target():
    rows, details = bench.run(bench.QUICK)
    target = [r for r in rows if r.target is not None]
    assert len(target) == 1 and target[0].target == CYCLE_ESTIMATE_ERROR
    assert target[0].ok is True, target[0]
    assert "one programme, 5 past cycles, at half" in target[0].measure
    for key in ("mixed_half", "mixed_three_quarters", "mixed_half_misheard"):
        m = details[key]
        # Well inside the target, and far better than the median of past durations.
        assert m["median_error_pct"] < 5 and m["baseline_pct"] > 20, (key, m)
        assert m["no_estimate"] == 0
    assert all(r.value is not None and r.value >= 0 for r in rows)
