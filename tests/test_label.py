"""`beepnet label`: the pure core (queue, suggestions, journal, undo, runs) directly, and the real
command in a real terminal (tmux, as in test_monitor.py) with real WAV files.

The only fake is the audio player (a shell script that logs what it was asked to play): the
test machine has no speaker to listen to. The pytest process never imports torch; the one
test that uses the shipped model does so in the `beepnet label` child process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from procs import children, comm, wait_for
from test_monitor import Tmux

from beepnet.training import synth
from beepnet.detectors.base import WindowScore
from beepnet.label import core
from beepnet.label.analysis import Analyser, Prefetcher
from beepnet.label.core import (
    Analysis,
    Clip,
    ModelView,
    Session,
    Similarity,
    select_run,
)
from beepnet.notify.feedback import UNSURE
from beepnet.label.journal import JOURNAL_NAME, Journal, JournalError
from beepnet.label.spectrum import look, spectral_distance
from beepnet.label.terminal import initial_labels, read_keys, unsure_undo_folders
from beepnet.label.view import Screen, render

SR = 16000
CHUNK = 3 * SR
SESSION_A = "20261121-073138"
SESSION_B = "20261121-090000"


# -- test data ---------------------------------------------------------------------------------

def washer_chunks(n: int, seed: int = 0, beep_at: tuple[int, ...] = ()) -> list[np.ndarray]:
    """``n`` consecutive 3-s chunks of one washer recording; those in ``beep_at`` get a
    2.9 kHz beep 10 dB above the washer."""
    x = synth.washer(np.random.default_rng(seed), n * 3.0, phase="wash")
    chunks = [x[i * CHUNK:(i + 1) * CHUNK] for i in range(n)]
    return [synth.mix(c, synth.beep(2900.0, 0.5), 1.0, 10.0) if i in beep_at else c
            for i, c in enumerate(chunks)]


def write_chunks(folder: Path, session: str, chunks: list[np.ndarray]) -> list[Path]:
    """Named as `beepnet record` names them: <session>_<first sample>.wav, 16-bit PCM."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, c in enumerate(chunks):
        p = folder / f"{session}_{i * CHUNK:010d}.wav"
        sf.write(p, c, SR, subtype="PCM_16")
        paths.append(p)
    return paths


def contents(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the journal -> its path relative to root:
    the same keys before and after means no clip was lost, duplicated or altered."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != JOURNAL_NAME:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            assert digest not in out, f"{p} duplicates {out[digest]}"
            out[digest] = str(p.relative_to(root))
    return out


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


# -- the pure core -----------------------------------------------------------------------------

def test_clips_come_in_recording_order_and_hidden_files_are_left_alone(tmp_path):
    for name in ("s_0000048000.wav", "s_0000000000.wav", "r_10.wav", "r_9.wav", "notes.txt",
                 ".s_0000096000.wav.tmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    clips = core.list_clips(tmp_path)
    assert [c.name for c in clips] == ["notes.txt", "r_9.wav", "r_10.wav", "s_0000000000.wav",
                                       "s_0000048000.wav"]
    assert [c.session for c in clips] == ["notes", "r", "r", "s", "s"]


VIEW = {"threshold": 0.2}


@pytest.mark.parametrize("p_beep,classes,labels,expected", [
    (0.93, {"beep": 0.93, "washer": 0.07}, ["beep", "not_beep"], "beep"),
    (0.15, {"beep": 0.15, "tonal": 0.85}, ["beep", "not_beep"], "not_beep"),
    # The model's class name matches a label (case, separators and a plural s aside).
    (0.01, {"beep": 0.01, "washer": 0.98, "speech": 0.01}, ["beep", "Washers", "not_beep"],
     "Washers"),
    (0.01, {"beep": 0.01, "speech": 0.99}, ["beep", "washing", "speech"], "speech"),
    # No label of that name, no not-beep label: no suggestion (Enter does nothing).
    (0.01, {"beep": 0.01, "washer": 0.99}, ["beep", "washing", "spinning"], None),
    (0.05, {"beep": 0.05, "washer": 0.95}, ["beep", "washing", "other"], "other"),
])
def test_suggestion_maps_model_classes_onto_the_labels(p_beep, classes, labels, expected):
    s = core.suggest(ModelView(p_beep, classes, **VIEW), labels)
    assert s.label == expected, s.why


def test_no_model_no_suggestion():
    assert core.suggest(None, ["beep", "not_beep"]).label is None


def test_spectral_distance_ignores_level_and_sees_a_beep():
    wash = washer_chunks(4, beep_at=(3,))
    a, b, c, beep = (look(x) for x in wash)
    quieter = look(wash[0] * 0.1)
    assert spectral_distance(a, quieter) < 0.5
    assert spectral_distance(a, b) < 6.0 and spectral_distance(a, c) < 6.0
    assert spectral_distance(a, beep) > 10.0


def _journal_session(tmp_path, paths, labels=("beep", "not_beep")):
    out = tmp_path / "labelled"
    journal = Journal.open(out)
    clips = core.list_clips(paths[0].parent)
    return Session(clips, out, list(labels), journal), journal, out


def test_moves_never_overwrite_and_undo_goes_back_through_a_restart(tmp_path):
    inbox = tmp_path / "unlabelled"
    paths = write_chunks(inbox, SESSION_A, washer_chunks(3))
    # A clip of the same name already filed (from another machine, say): kept, not replaced.
    (tmp_path / "labelled" / "not_beep").mkdir(parents=True)
    (tmp_path / "labelled" / "not_beep" / paths[0].name).write_bytes(b"older clip")
    before = contents(tmp_path)
    session, journal, out = _journal_session(tmp_path, paths)
    assert session.label("not_beep") == []
    assert names(out / "not_beep") == sorted([paths[0].name, paths[0].stem + "-1.wav"])
    assert (out / "not_beep" / paths[0].name).read_bytes() == b"older clip"
    session.skip()
    assert session.label("beep") == []
    assert session.current is None and names(inbox) == [paths[1].name]
    journal.close()

    # Another process, later: the history is in the journal.
    session, journal, out = _journal_session(tmp_path, [paths[1]])
    assert session.undo(inbox).restored[0][1] == paths[2]
    assert session.current == Clip(paths[2]) and session.pos == 1
    assert session.undo(inbox).restored[0][1] == paths[0]
    assert session.current == Clip(paths[0])
    assert session.undo(inbox) is None
    journal.close()
    assert names(inbox) == [p.name for p in paths]
    assert contents(tmp_path) == before
    ops = [json.loads(line)["op"] for line in (out / JOURNAL_NAME).read_text().splitlines()]
    assert ops == ["move", "move", "undo", "undo"]


def test_a_move_cut_short_by_a_kill_is_finished_or_forgotten(tmp_path):
    """Killed between link and unlink: both names exist; the next start drops the old one.
    Killed after the journal record but before the move: the record counts for nothing."""
    inbox = tmp_path / "unlabelled"
    p0, p1 = write_chunks(inbox, SESSION_A, washer_chunks(2))
    out = tmp_path / "labelled"
    (out / "beep").mkdir(parents=True)
    os.link(p0, out / "beep" / p0.name)
    records = [{"op": "move", "batch": 1, "src": f"../unlabelled/{p.name}",
                "dst": f"beep/{p.name}", "label": "beep", "time": 0} for p in (p0, p1)]
    (out / JOURNAL_NAME).write_text("".join(json.dumps(r) + "\n" for r in records)
                                    + '{"op": "mo')  # and a line cut in half
    with Journal.open(out) as journal:
        assert journal.skipped_lines == 1
        assert not p0.exists() and (out / "beep" / p0.name).exists()
        assert p1.exists()
        result = journal.undo_last()
        assert result.restored == [(out / "beep" / p0.name, p0)] and not result.problems
    assert names(inbox) == [p0.name, p1.name] and names(out / "beep") == []


def test_one_labeller_per_folder(tmp_path):
    with Journal.open(tmp_path), pytest.raises(JournalError, match="another `beepnet label`"):
        Journal.open(tmp_path)


def test_a_run_takes_the_following_similar_clips_of_the_same_session(tmp_path):
    inbox = tmp_path / "unlabelled"
    a = write_chunks(inbox, SESSION_A, washer_chunks(6, beep_at=(4,)))
    b = write_chunks(inbox, SESSION_B, washer_chunks(2, seed=3))
    session, journal, _ = _journal_session(tmp_path, a)
    looks = {}

    def analyse(clip: Clip, view: ModelView | None = None) -> Analysis:
        if clip.path not in looks:
            try:
                looks[clip.path] = look(sf.read(clip.path, dtype="float32")[0])
            except sf.LibsndfileError:
                return Analysis(None, "unreadable")
        return Analysis(looks[clip.path], None, view)

    with journal:
        assert select_run(session, analyse, Similarity()) == ([], "label a clip first")
        analyse(session.current)  # shown before it is labelled, as in the terminal
        session.label("not_beep")
        run, why = select_run(session, analyse, Similarity())
        assert [c.path for c in run] == a[1:4]
        assert why.startswith(a[4].name) and "spectrum differs" in why
        assert session.label_run("not_beep", run) == []
        session.label("beep")
        session.label("not_beep")  # a[5], never shown: compared from where it was filed
        # The next session's clips are never part of a run.
        run, why = select_run(session, analyse, Similarity())
        assert run == [] and "another session" in why
        # With a model: the suggestions must agree too.
        session.label("not_beep")

        def with_model(clip: Clip) -> Analysis:
            p = 0.9 if clip.path == b[1] else 0.01
            return analyse(clip, ModelView(p, {"beep": p, "washer": 1 - p}, 0.2))

        session.undo(inbox)
        assert session.current == Clip(b[0])
        with_model(session.current)
        session.label("not_beep")
        run, why = select_run(session, with_model, Similarity())
        assert run == [] and "model suggests beep, not not_beep" in why
        # Undo takes a whole run back at once.
        before = len(session.queue)
        while session.undo(inbox) is not None:
            pass
        assert len(session.queue) == before + 7
    assert names(inbox) == sorted(p.name for p in a + b)


class CountingDetector:
    """A stand-in for BeepNet (torch stays out of this process): P(beep) is the clip's peak."""

    name, sample_rate, threshold = "counting", SR, 0.5

    def __init__(self) -> None:
        self.calls: list[int] = []

    def describe(self) -> str:
        return "counting detector"

    def score(self, window: np.ndarray) -> WindowScore:
        self.calls.append(len(window))
        p = float(np.max(np.abs(window)))
        return WindowScore(p, {"beep": p, "washer": 1 - p})


def test_clips_are_scored_ahead_and_each_once(tmp_path):
    inbox = tmp_path / "unlabelled"
    paths = write_chunks(inbox, SESSION_A, washer_chunks(5))
    (inbox / "zz_empty.wav").write_bytes(b"")
    clips = core.list_clips(inbox)
    det = CountingDetector()
    analyser = Analyser(None, make_detector=lambda path: det)
    prefetch = Prefetcher(analyser)
    prefetch.start()
    try:
        prefetch.want(clips)
        assert wait_for(lambda: len(det.calls) == 5, 10)
        for clip in clips:  # all there already: nothing is scored again
            a, complete = analyser.analysis(clip)
            assert complete and (a.model is None) == (clip.name == "zz_empty.wav")
        assert analyser.analysis(Clip(paths[0]), wait=True)[0].model.threshold == 0.5
    finally:
        prefetch.stop()
    assert det.calls == [CHUNK] * 5 and analyser.scored == 5
    assert analyser.model_name == "counting detector"


def test_without_torch_or_a_model_labelling_goes_on(tmp_path):
    (p,) = write_chunks(tmp_path, SESSION_A, washer_chunks(1))

    def no_torch(path):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    analyser = Analyser(None, make_detector=no_torch)
    a, complete = analyser.analysis(Clip(p), wait=True)
    assert a.look is not None and a.model is None and complete
    assert analyser.model_state == "failed" and "torch is not installed" in analyser.model_error
    off = Analyser(None, use_model=False)
    assert off.analysis(Clip(p))[1] and off.analysis(Clip(p))[0].model is None


def test_read_keys_keeps_escape_sequences_whole():
    r, w = os.pipe()
    try:
        os.write(w, b"1\x1b[Aa\n\x1bq")
        assert read_keys(r, 1.0) == ["1", "\x1b[A", "a", "\n", "\x1b", "q"]
        assert read_keys(r, 0.01) == []
    finally:
        os.close(r)
        os.close(w)


def test_render_fits_the_terminal_and_says_why_a_file_is_unusable():
    from rich.console import Console

    lk = look(washer_chunks(1, beep_at=(0,))[0])
    base = {"clip": Clip(Path(f"{SESSION_A}_0000000000.wav")), "position": 1, "total": 3,
            "in_dir": "data/unlabelled", "out_dir": "data/labelled",
            "labels": ["beep", "not_beep"], "in_folder": {"beep": 2}}
    for width, height in ((100, 30), (60, 14), (30, 8)):
        for screen in (Screen(**base, analysis=Analysis(lk)),
                       Screen(**base, analysis=Analysis(None, "empty file (0 bytes)"),
                              prompt="Label the next 3 clip(s)?\nx .. y\nthe run ends: z")):
            console = Console(width=width, height=height, record=True, color_system=None)
            console.print(render(screen, width, height))
            text = console.export_text()
            lines = text.splitlines()
            assert len(lines) <= height and all(len(ln) <= width for ln in lines), text
    console = Console(width=100, height=30, record=True, color_system=None)
    console.print(render(Screen(**base, analysis=Analysis(None, "empty file (0 bytes)")), 100,
                         30))
    assert "cannot use this file: empty file (0 bytes)" in console.export_text()


def test_labelling_code_does_not_import_torch():
    code = ("import sys, beepnet.cli, beepnet.label.terminal, beepnet.label.analysis;"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# -- --unsure: what the bot's /missed kept ---------------------------------------------------------

MISSED_1, MISSED_2 = "20261205-140412", "20261205-150000"
"""Two /missed, one folder each under feedback/unsure/."""


def test_unsure_queue_is_every_missed_folder_in_recording_order(tmp_path):
    unsure = tmp_path / "feedback" / "unsure"
    a = write_chunks(unsure / MISSED_1, SESSION_A, washer_chunks(2))
    b = write_chunks(unsure / MISSED_2, SESSION_B, washer_chunks(2, seed=1))
    # The second /missed came soon after the first: it kept A's last chunk again.
    overlap = unsure / MISSED_2 / a[1].name
    overlap.write_bytes(a[1].read_bytes())
    loose = unsure / f"{SESSION_B}_{5 * CHUNK:010d}.wav"  # a file right in unsure/ counts too
    loose.write_bytes(b[0].read_bytes())
    (unsure / ".tmp").mkdir()
    (unsure / ".tmp" / f"{SESSION_A}_0000000000.wav").write_bytes(b"x")  # hidden: never
    folders = core.unsure_folders(unsure)
    assert folders == [unsure, unsure / MISSED_1, unsure / MISSED_2]
    clips = core.list_clips_in(folders)
    assert [c.path for c in clips] == [a[0], a[1], overlap, b[0], b[1], loose]


def test_unsure_labels_land_in_feedback_and_undo_puts_them_back(tmp_path):
    feedback = tmp_path / "feedback"
    unsure = feedback / "unsure"
    a = write_chunks(unsure / MISSED_1, SESSION_A, washer_chunks(1))
    b = write_chunks(unsure / MISSED_2, SESSION_B, washer_chunks(1, seed=1, beep_at=(0,)))
    (feedback / "not_beep").mkdir()
    labels, problem = initial_labels(feedback, None, reserved=(UNSURE,))
    assert problem is None and labels == ["beep", "not_beep"]  # not unsure
    # Without the reservation (an ordinary LABELLED_DIR) a folder of that name is a label.
    assert "unsure" in initial_labels(feedback, None)[0]
    assert "cannot be a label here" in initial_labels(feedback, "unsure", (UNSURE,))[1]

    folders = core.unsure_folders(unsure)
    with Journal.open(feedback) as journal:
        session = Session(core.list_clips_in(folders), feedback, labels, journal, (UNSURE,))
        assert "cannot be a label here" in session.add_label("unsure")
        assert session.labels == ["beep", "not_beep"]
        assert session.label("not_beep") == [] and session.label("beep") == []
        assert names(feedback / "not_beep") == [a[0].name]
        assert names(feedback / "beep") == [b[0].name]
        assert names(unsure / MISSED_1) == names(unsure / MISSED_2) == []
        # Undo brings the beep back into its own /missed folder, and into the queue.
        assert session.undo(folders).restored[0][1] == b[0]
        assert session.current == Clip(b[0]) and b[0].exists()

    # The emptied folder was removed after the session; a later session can still undo a
    # move out of it: the clip goes back into a new folder of that name and is queued again.
    (unsure / MISSED_1).rmdir()
    with Journal.open(feedback) as journal:
        back_to = unsure_undo_folders(unsure, journal)
        assert back_to == [unsure / MISSED_1]
        in_dirs = [*core.unsure_folders(unsure), *back_to]  # as cmd_label makes them
        session = Session(core.list_clips_in(core.unsure_folders(unsure)), feedback, labels,
                          journal)
        assert [c.path for c in session.queue] == [b[0]]
        assert session.undo(in_dirs).restored[0][1] == a[0]
        assert [c.path for c in session.queue] == [a[0], b[0]] and session.pos == 0
    assert names(feedback / "not_beep") == [] and a[0].exists()


# -- the command in a terminal -----------------------------------------------------------------

@pytest.fixture
def env(tmp_path) -> dict:
    e = {k: v for k, v in os.environ.items()
         if k not in ("BEEPNET_CONFIG", "TMUX", "BEEPNET_TELEGRAM_TOKEN",
                      "BEEPNET_TELEGRAM_CHAT_ID")}
    e["HOME"] = str(tmp_path / "home")
    os.makedirs(e["HOME"], exist_ok=True)
    e["TERM"] = "xterm-256color"
    return e


@pytest.fixture
def player(tmp_path) -> tuple[str, Path]:
    """A stand-in audio player: logs each path it is given."""
    log = tmp_path / "played.log"
    script = tmp_path / "fake-player"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> '{log}'\n")
    script.chmod(0o755)
    return str(script), log


@pytest.fixture
def label_term(tmp_path, env):
    made: list[Tmux] = []

    def start(args: list[str], width: int = 100, height: int = 32, stty: bool = False) -> Tmux:
        run_dir = tmp_path / f"term{len(made)}"  # each run its own exit-status file
        run_dir.mkdir()
        command = [sys.executable, "-m", "beepnet", "label", *args]
        if stty:  # then print the terminal's mode as the shell gets it back
            script = ('"$@"; s=$?; printf "stty: %s\\n" "$(stty -a | grep -ow -e -icanon '
                      '-e icanon -e -echo -e echo | tr "\\n" " ")"; exit $s')
            command = ["sh", "-c", script, "sh", *command]
        t = Tmux(run_dir, command, env, width, height)
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


def label_pid(t: Tmux) -> int:
    """The `beepnet label` process under the terminal's shell(s)."""
    todo = [int(t._tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())]
    while todo:
        pid = todo.pop()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        if "beepnet" in cmdline and comm(pid).startswith("python"):
            return pid
        todo += children(pid)
    raise AssertionError("no beepnet label process")


def played(log: Path) -> list[str]:
    return [Path(p).name for p in log.read_text().split()] if log.exists() else []


def test_label_skip_replay_run_and_undo_in_a_terminal(tmp_path, label_term, player):
    """Keys 2 and 1 file clips, a + y files the similar ones that follow, s skips, p replays,
    u takes the last action back (a run as a whole); bad files are shown and can be filed."""
    data = tmp_path / "data"
    inbox, out = data / "unlabelled", data / "labelled"
    a = write_chunks(inbox, SESSION_A, washer_chunks(6, beep_at=(4,)))
    (inbox / f"{SESSION_B}_0000000000.wav").write_bytes(b"")
    (inbox / f"{SESSION_B}_0000048000.wav").write_bytes(a[0].read_bytes()[:3000])  # truncated
    (inbox / "notes.txt").write_text("not audio")
    before = contents(data)
    command, log = player
    t = label_term([str(inbox), "--out", str(out), "--no-model", "--player", command])
    t.wait_screen(lambda s: "clip 1 of 9" in s and a[0].name in s and "8k ┤" in s, 15)
    assert wait_for(lambda: played(log) == [a[0].name], 5)

    t.keys("2")
    t.wait_screen(lambda s: a[1].name in s and "not_beep (1)" in s, 5)
    t.keys("a")
    screen = t.wait_screen(lambda s: "Label the next 3 clip(s)" in s, 10)
    assert f"{a[1].name} .. {a[3].name}" in screen
    assert re.search(rf"the run ends: {a[4].name}: spectrum differs by \d+ dB", screen)
    t.keys("y")
    t.wait_screen(lambda s: "3 clip(s) -> not_beep/" in s and a[4].name in s, 5)
    assert names(out / "not_beep") == [p.name for p in a[:4]]
    t.keys("1")
    t.wait_screen(lambda s: a[5].name in s, 5)
    t.keys("s")
    t.wait_screen(lambda s: f"{SESSION_B}_0000000000.wav" in s
                  and "cannot use this file: empty file (0 bytes)" in s, 5)
    t.keys("p")
    t.wait_screen(lambda s: "cannot play this file" in s, 5)
    t.keys("s")
    t.wait_screen(lambda s: "truncated" in s, 5)
    t.keys("n", "j", "u", "n", "k", "Enter")
    t.wait_screen(lambda s: "notes.txt" in s and "not an audio file" in s and "junk (1)" in s, 5)
    t.keys("s")
    t.wait_screen(lambda s: "nothing left to label" in s, 5)
    assert names(out / "beep") == [a[4].name]

    t.keys("u")  # the truncated file back
    t.wait_screen(lambda s: "truncated" in s, 5)
    t.keys("u")  # the beep back
    t.wait_screen(lambda s: a[4].name in s and "beep (0)" in s, 5)
    t.keys("p")
    t.wait_screen(lambda s: f"playing {a[4].name}" in s, 5)
    t.keys("u")  # the whole run back at once
    t.wait_screen(lambda s: "undone: 3 clips moved back" in s and a[1].name in s, 5)
    assert names(out / "not_beep") == [a[0].name]
    t.keys("q")
    assert t.exit_status() == 0
    assert "moved 6 clip(s), undid 5, skipped 3" in t.screen()
    assert sorted(contents(data)) == sorted(before)
    # Each clip plays when it comes up (not the unreadable ones), and again on p.
    assert played(log) == [a[i].name for i in (0, 1, 4, 5, 4, 4, 1)]
    assert "Traceback" not in t.screen()


def test_quit_restart_continue_and_undo_from_the_journal(tmp_path, label_term, player):
    """The second run starts at the first clip left, and u undoes a move of the first run;
    Ctrl-C ends it like q (exit status 130) and gives the terminal back."""
    data = tmp_path / "data"
    inbox, out = data / "unlabelled", data / "labelled"
    a = write_chunks(inbox, SESSION_A, washer_chunks(3))
    before = contents(data)
    args = [str(inbox), "--out", str(out), "--no-model", "--player", player[0]]
    t = label_term(args)
    t.wait_screen(lambda s: "clip 1 of 3" in s, 15)
    t.keys("2")
    t.wait_screen(lambda s: a[1].name in s, 5)
    t.keys("1")
    t.wait_screen(lambda s: a[2].name in s, 5)
    t.keys("q")
    assert t.exit_status() == 0

    t = label_term(args, stty=True)
    t.wait_screen(lambda s: "clip 1 of 1" in s and a[2].name in s and "beep (1)" in s, 15)
    t.keys("u")
    t.wait_screen(lambda s: "clip 1 of 2" in s and a[1].name in s, 5)
    t.keys("u")
    t.wait_screen(lambda s: "clip 1 of 3" in s and a[0].name in s, 5)
    t.keys("u")
    t.wait_screen(lambda s: "nothing to undo" in s, 5)
    # Ctrl-C: the same SIGINT the terminal sends, but to beepnet alone (tmux's C-c would
    # also end the test's wrapping shells, which do not survive a SIGINT).
    os.kill(label_pid(t), signal.SIGINT)
    assert t.exit_status() == 130
    # The terminal is back in its normal mode (the shell ran `stty -a` after beepnet).
    assert t.wait_screen(lambda s: "stty:" in s, 5)
    assert re.search(r"stty: icanon echo", t.screen()), t.screen()
    assert names(inbox) == [p.name for p in a]
    assert sorted(contents(data)) == sorted(before)


def test_suggestions_from_the_shipped_model(tmp_path, label_term):
    """Enter accepts the model's suggestion: beep for the beep, and for the washer the user's
    label named like the model's class ("washer")."""
    data = tmp_path / "data"
    inbox, out = data / "unlabelled", data / "labelled"
    a = write_chunks(inbox, SESSION_A, washer_chunks(2, beep_at=(1,)))
    t = label_term([str(inbox), "--out", str(out), "--labels", "washer", "--player", "none"])
    t.wait_screen(lambda s: "suggests [2] washer" in s and "model beepnet-default.safetensors" in s, 30)
    t.keys("Enter")
    t.wait_screen(lambda s: a[1].name in s and "suggests [1] beep" in s, 10)
    t.keys("Enter")
    t.wait_screen(lambda s: "nothing left to label" in s, 5)
    t.keys("q")
    assert t.exit_status() == 0
    assert names(out / "washer") == [a[0].name] and names(out / "beep") == [a[1].name]


@pytest.mark.parametrize("setup,args,status,message", [
    ("clips", [], 2, "needs a terminal to read keys from (stdin is not a tty)"),
    ("none", [], 1, "no such directory"),
    ("empty", [], 1, "no clips to label"),
    ("clips", ["--labels", "a b"], 2, "'a b' is not a usable label"),
    ("clips", ["--model", "nope.pt"], 1, "nope.pt: no such model file"),
])
def test_unusable_start_is_one_line_and_a_status(tmp_path, env, setup, args, status, message):
    inbox = tmp_path / "unlabelled"
    if setup == "clips":
        write_chunks(inbox, SESSION_A, washer_chunks(1))
    elif setup == "empty":
        inbox.mkdir()
    r = subprocess.run([sys.executable, "-m", "beepnet", "label", str(inbox), *args], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       cwd=tmp_path, check=False)
    assert r.returncode == status
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert r.stdout == ""


def test_label_unsure_in_a_terminal(tmp_path, label_term, player):
    """--unsure queues the clips of every /missed folder, offers the feedback folder's labels
    (not unsure), files into feedback/<label>/, and removes the /missed folders it emptied."""
    storage = tmp_path / "storage"
    feedback = storage / "feedback"
    unsure = feedback / "unsure"
    a = write_chunks(unsure / MISSED_1, SESSION_A, washer_chunks(2))
    b = write_chunks(unsure / MISSED_2, SESSION_B, washer_chunks(2, seed=1, beep_at=(0,)))
    (feedback / "beep").mkdir()
    (feedback / "beep" / "20261101-101010_0000000000.wav").write_bytes(b"an alert's window")
    (feedback / "not_beep").mkdir()
    before = contents(storage)
    t = label_term(["--unsure", "--no-model", "--player", player[0],
                    "--set", f"storage.dir={storage}"], width=320)
    screen = t.wait_screen(lambda s: "clip 1 of 4" in s and a[0].name in s, 15)
    assert f"{unsure} and 2 folder(s) in it -> {feedback}" in screen
    assert "[1] beep (1)" in screen and "[2] not_beep (0)" in screen
    assert "unsure (" not in screen
    t.keys("2")
    t.wait_screen(lambda s: "clip 1 of 3" in s and a[1].name in s, 5)
    t.keys("2")
    t.wait_screen(lambda s: "clip 1 of 2" in s and b[0].name in s, 5)
    t.keys("1")
    t.wait_screen(lambda s: b[1].name in s, 5)
    t.keys("s")
    t.wait_screen(lambda s: "nothing left to label" in s
                  and "run `beepnet label --unsure` again" in s, 5)
    t.keys("u")
    t.wait_screen(lambda s: f"undone: {b[0].name} back to {unsure / MISSED_2}" in s, 5)
    t.keys("1")  # the undo went back before the skip: the skipped clip comes up again
    t.wait_screen(lambda s: f"{b[0].name} -> beep/" in s and b[1].name in s, 5)
    t.keys("s")
    t.wait_screen(lambda s: "nothing left to label" in s, 5)
    t.keys("q")
    assert t.exit_status() == 0
    assert names(feedback / "not_beep") == [a[0].name, a[1].name]
    assert names(feedback / "beep") == sorted(["20261101-101010_0000000000.wav", b[0].name])
    # The first /missed folder is empty now and gone; the second keeps the skipped clip.
    assert not (unsure / MISSED_1).exists() and names(unsure / MISSED_2) == [b[1].name]
    assert sorted(contents(storage)) == sorted(before)
    assert "moved 4 clip(s), undid 1, skipped 2; 1 clip(s) left in" in t.screen()
    assert "Traceback" not in t.screen()


@pytest.mark.parametrize("setup,args,status,message", [
    ("clips", ["--unsure", "some/dir"], 2, "--unsure takes no UNLABELLED_DIR and no --out"),
    ("clips", ["--unsure", "--out", "x"], 2, "--unsure takes no UNLABELLED_DIR and no --out"),
    ("clips", ["--unsure", "--labels", "unsure"], 2, "'unsure' cannot be a label here"),
    ("none", ["--unsure"], 1, "no clips to label (the bot's /missed keeps"),
    ("empty", ["--unsure"], 1, "no clips to label (the bot's /missed keeps"),
])
def test_unusable_unsure_start_is_one_line_and_a_status(tmp_path, env, setup, args, status,
                                                        message):
    storage = tmp_path / "storage"
    feedback = storage / "feedback"
    if setup == "clips":
        write_chunks(feedback / "unsure" / MISSED_1, SESSION_A, washer_chunks(1))
    elif setup == "empty":  # labelled clips, and an emptied /missed folder: nothing to do
        write_chunks(feedback / "beep", SESSION_A, washer_chunks(1))
        (feedback / "unsure" / MISSED_1).mkdir(parents=True)
    before = contents(tmp_path)
    r = subprocess.run([sys.executable, "-m", "beepnet", "label", *args,
                        "--set", f"storage.dir={storage}"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert r.returncode == status
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert r.stdout == ""
    assert contents(tmp_path) == before and not (feedback / JOURNAL_NAME).exists()
