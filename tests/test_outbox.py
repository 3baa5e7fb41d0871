"""The outbox's durability and bounds, on their own (the old watch's timing rules are the
cycle machine's now: tests/test_cycle.py)."""

from __future__ import annotations

import json

from beepnet.notify.outbox import Clock, Outbox


def test_outbox_items_are_whole_and_ordered(tmp_path):
    box = Outbox(tmp_path)
    a = box.put("start", "listening", created=100.0)
    b = box.put("beep", "Beep at 10:00", audio=b"\xff\xf3" + b"x" * 5000, title="Beep",
                created=200.0)
    assert [i.id for i in box.pending()] == [a.id, b.id]
    assert box.audio_path(b).read_bytes()[:2] == b"\xff\xf3"
    # A crash between the MP3 and the JSON leaves an MP3 alone: cleaned on the next start.
    (tmp_path / "orphan.mp3").write_bytes(b"x")
    (tmp_path / ".abc.tmp").write_bytes(b"x")
    box = Outbox(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{a.id}.json", f"{b.id}.json", b.audio])
    box.note_attempt(b)
    assert json.loads((tmp_path / f"{b.id}.json").read_text())["attempts"] == 1
    box.remove(a)
    assert [i.id for i in box.pending()] == [b.id]


def test_outbox_expires_by_age_then_by_size(tmp_path):
    now = [0.0]
    clock = Clock(wall=lambda: now[0], boot=lambda: now[0], boot_id="boot-1")
    box = Outbox(tmp_path, max_age_hours=1.0, max_mb=0.01, clock=clock)  # ~10 kB
    old = box.put("beep", "old", audio=b"x" * 100)
    now[0] = 7000.0
    mid = box.put("beep", "mid", audio=b"x" * 6000)
    now[0] = 7100.0
    new = box.put("beep", "new", audio=b"x" * 6000)
    now[0] = 7200.0
    expired = box.expire()
    assert [i.id for i in expired] == [old.id, mid.id]  # too old; then too big, oldest first
    assert [i.id for i in box.pending()] == [new.id]
    assert not (tmp_path / old.audio).exists() and not (tmp_path / mid.audio).exists()


def test_refused_items_are_set_aside_not_deleted(tmp_path):
    box = Outbox(tmp_path)
    item = box.put("beep", "x", audio=b"y" * 10)
    box.set_aside(item, "Telegram refused the message: Wrong file")
    assert box.pending() == []
    kept = json.loads((tmp_path / "rejected" / f"{item.id}.json").read_text())
    assert kept["extra"]["rejected"].endswith("Wrong file")
    assert (tmp_path / "rejected" / item.audio).exists()
