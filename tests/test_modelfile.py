"""Model files (beepnet.model.modelfile): safetensors weights, checked metadata, hostile
files refused in bounded memory with one line, and beepnet 0.1's .pt converted once.

The pytest process never imports torch (see test_beepnet_model); what needs torch runs in
the module's worker or in `beepnet` subprocesses.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from procs import run_beepnet

from beepnet.model.arch import NetConfig
from beepnet.model.modelfile import (
    MAX_FILE_BYTES,
    ModelFileError,
    model_file_problem,
    read_model_file,
    write_model_file,
)
from beepnet.model.npnet import load_numpy_model
from beepnet.testing.procs import measure

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "beepnet-default.safetensors"
DEMO = REPO / "data" / "demo" / "washer-cycle.ogg"
CRAFTED_MAX_MB = 100
"""The issue's bound for `beepnet detect` refusing a crafted model file."""

beepnet = run_beepnet


def _shipped() -> tuple[dict, dict[str, np.ndarray]]:
    mf = read_model_file(SHIPPED)
    return mf.meta, mf.tensors


def _raw(header: dict, data: bytes = b"") -> bytes:
    """A safetensors file laid out by hand, to say what no writer would."""
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def _with_meta(meta: dict, tensors: dict[str, np.ndarray] | None = None) -> bytes:
    return save(tensors if tensors is not None else _shipped()[1],
                metadata={"beepnet": json.dumps(meta)})


def _one_line(path: Path, numbers: bool = False) -> str:
    """The one-line error of loading ``path``; the start-up check (the header alone, no
    numpy) gives the same line, unless only the numbers are wrong (``numbers``)."""
    with pytest.raises(ModelFileError) as e:
        load_numpy_model(path)
    text = str(e.value)
    assert "\n" not in text and str(path) in text and len(text) < 400, text
    assert model_file_problem(path) == (None if numbers else text)
    return text


# --- the format ---------------------------------------------------------------------------


def test_the_shipped_model_is_a_safetensors_file_with_its_metadata():
    raw = SHIPPED.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"]["beepnet"])
    assert meta["format"] == "beepnet-model" and meta["format_version"] == 2
    assert meta["labels"] == ["beep", "music", "other", "speech", "tonal", "washer"]
    assert meta["sample_rate"] == 16000 and 0 < meta["threshold"] < 1
    assert meta["arch"]["kind"] == "beepnet" and meta["data_sha256"]
    assert set(header) - {"__metadata__"} == set(NetConfig().shapes())
    assert not raw.startswith(b"PK")  # no zip, no pickle


def test_write_then_read_round_trip(tmp_path):
    meta, tensors = _shipped()
    path = tmp_path / "copy.safetensors"
    write_model_file(path, tensors, NetConfig(), meta["labels"], 0.25,
                     metrics={"recall": 0.5}, data_sha256="cd" * 32, created="2026-01-01T00:00:00Z")
    mf = read_model_file(path)
    assert mf.threshold == 0.25 and mf.meta["metrics"] == {"recall": 0.5}
    assert mf.meta["created"] == "2026-01-01T00:00:00Z" and mf.arch == NetConfig()
    for k, v in tensors.items():
        assert mf.tensors[k].dtype == v.dtype and np.array_equal(mf.tensors[k], v), k
    info = load_numpy_model(path)
    assert info.threshold == 0.25 and info.data_sha256 == "cd" * 32 and info.path == str(path)


def test_model_info_prints_what_the_file_holds():
    r = beepnet("model", "info", str(SHIPPED))
    assert r.returncode == 0, r.stderr
    assert "beep, music, other, speech, tonal, washer" in r.stdout and "threshold" in r.stdout
    r = beepnet("model", "info", "--json", str(SHIPPED))
    assert r.returncode == 0 and json.loads(r.stdout)["format_version"] == 2


# --- files that must be refused -----------------------------------------------------------


def _bad_files() -> dict[str, tuple[bytes, str]]:
    """name -> (file content, what its one-line error says)."""
    meta, tensors = _shipped()
    raw = SHIPPED.read_bytes()
    shapes = dict(tensors, **{"body.0.weight": np.zeros((64, 64, 3), np.float32)})
    nan = dict(tensors, **{"classifier.bias": np.full(6, np.nan, np.float32)})
    half = {k: (v.astype(np.float16) if k == "classifier.bias" else v) for k, v in tensors.items()}
    # The header's own length field, pointing far past the end of the file.
    huge_header = struct.pack("<Q", 10**12) + raw[8:]
    return {
        "empty": (b"", "empty file"),
        "junk": (b"not a model at all" * 10, "not a readable BeepNet model"),
        "truncated": (raw[: len(raw) // 2], "not a readable BeepNet model"),
        "header-claims-1TB": (huge_header, "not a readable BeepNet model"),
        "bad-json": (struct.pack("<Q", 12) + b'{"a": [1, 2', "not a readable BeepNet model"),
        # A shape of 10^12 elements over 16 bytes of data, and one whose size overflows.
        "1e12-elements": (_raw({"w": {"dtype": "F32", "shape": [10**6, 10**6],
                                      "data_offsets": [0, 16]}}, bytes(16)),
                          "not a readable BeepNet model"),
        "overflowing-shape": (_raw({"w": {"dtype": "F32", "shape": [2**62, 8],
                                          "data_offsets": [0, 16]}}, bytes(16)),
                              "not a readable BeepNet model"),
        # Zero-sized: safetensors accepts it; the architecture's shapes do not.
        "zero-by-1e12": (_raw({"__metadata__": {"beepnet": json.dumps(meta)},
                               "frontend.weight": {"dtype": "F32", "shape": [0, 10**12],
                                                   "data_offsets": [0, 0]}}),
                         "weights do not fit"),
        "overlapping": (_raw({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},
                             bytes(24)), "not a readable BeepNet model"),
        "no-metadata": (save({"w": np.zeros(3, np.float32)}), "without beepnet's metadata"),
        "metadata-not-json": (save(tensors, metadata={"beepnet": "{nope"}), "not JSON"),
        "wrong-format": (_with_meta(dict(meta, format="other")), "not a BeepNet model file"),
        "version-1": (_with_meta(dict(meta, format_version=1)), "format version 1"),
        "rate": (_with_meta(dict(meta, sample_rate=8000)), "8000 Hz"),
        "labels": (_with_meta(dict(meta, labels=["a", "b", "c", "d", "e", "f"])), "labels"),
        "threshold": (_with_meta(dict(meta, threshold=1.5)), "threshold"),
        "outputs": (_with_meta(dict(meta, labels=["beep", "other"])), "2 labels"),
        "arch-key": (_with_meta(dict(meta, arch={**meta["arch"], "depth": 3})), "depth"),
        "arch-kind": (_with_meta(dict(meta, arch={**meta["arch"], "kind": "resnet"})),
                      "resnet"),
        "arch-huge": (_with_meta(dict(meta, arch={**meta["arch"], "n_filters": 10**9})),
                      "sizes must be"),
        "shape": (_with_meta(meta, shapes), "size mismatch for body.0.weight"),
        "extra": (_with_meta(meta, dict(tensors, extra=np.zeros(1, np.float32))),
                  "unexpected extra"),
        "missing": (_with_meta(meta, {k: v for k, v in tensors.items()
                                      if k != "classifier.bias"}), "missing classifier.bias"),
        "float16": (_with_meta(meta, half), "classifier.bias is F16"),
        "nan": (_with_meta(meta, nan), "not finite"),
    }


@pytest.mark.parametrize("name", list(_bad_files()))
def test_a_bad_or_hostile_file_is_one_line(tmp_path, name):
    data, why = _bad_files()[name]
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(data)
    assert why in _one_line(path, numbers=name == "nan")


def test_missing_and_oversized_files(tmp_path):
    assert "no such file" in _one_line(tmp_path / "missing.safetensors")
    assert "not a file" in _one_line(tmp_path)
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:  # sparse: nothing of it is ever read
        f.truncate(MAX_FILE_BYTES + 1)
    assert "more than a BeepNet model can be" in _one_line(big)


@pytest.mark.parametrize("name", ["1e12-elements", "header-claims-1TB", "zero-by-1e12",
                                  "truncated", "arch-huge"])
@pytest.mark.parametrize("command", ["detect", "run"])
def test_crafted_files_stop_the_commands_at_start(tmp_path, name, command):
    """`beepnet detect` and `beepnet run` refuse it in one line, exit 78, before any process
    is spawned, in bounded memory (measured in a fresh parent: its only child is beepnet)."""
    data, why = _bad_files()[name]
    model = tmp_path / "crafted.safetensors"
    model.write_bytes(data)
    args = (["detect", "--model", str(model), str(DEMO)] if command == "detect" else
            ["run", "--source", str(DEMO), "--set", f"detector.model={model}",
             "--set", f"storage.dir={tmp_path / 'state'}"])
    m = measure([sys.executable, "-m", "beepnet", *args], timeout=60)
    assert m.status == 78, m.stderr
    assert m.stderr.count("\n") == 1 and why in m.stderr and "Traceback" not in m.stderr
    assert m.stderr.startswith("beepnet: config error: model file ")
    assert m.peak_rss_mb < CRAFTED_MAX_MB, m
    assert not (tmp_path / "state").exists()  # nothing started: not even its storage


# --- beepnet 0.1's .pt files --------------------------------------------------------------


def _write_legacy(path: str, corrupt: bool = False) -> None:
    """A model file as beepnet 0.1 wrote it: torch.save of a dict with a state_dict."""
    import torch

    mf = read_model_file(SHIPPED)
    blob = {k: v for k, v in mf.meta.items() if k != "format_version"}
    blob.update(format_version=1, arch={k: v for k, v in mf.meta["arch"].items()
                                        if k != "kind"},
                state_dict={k: torch.from_numpy(v) for k, v in mf.tensors.items()})
    if corrupt:
        blob["threshold"] = 7.0
    torch.save(blob, path)


def _scores_by_torch(path: str) -> list[float]:
    from beepnet.detectors.beepnet import BeepNetDetector
    from beepnet.training import synth

    det = BeepNetDetector(path, runtime="torch")
    rng = np.random.default_rng(4)
    return [det.score(synth.mix(synth.washer(rng, 3.0), synth.beep(f, 0.4), 1.0, 5.0)).score
            for f in (1500.0, 2900.0, 4400.0)]


def test_a_legacy_pt_file_says_how_to_convert_it_and_converts_once(worker, tmp_path):
    old, new = tmp_path / "washer.pt", tmp_path / "washer.safetensors"
    worker(_write_legacy, str(old))
    r = beepnet("detect", "--model", str(old), str(DEMO))
    assert r.returncode == 78 and r.stderr.count("\n") == 1, r.stderr
    assert f"beepnet model convert {old} {new}" in r.stderr and "beepnet[train]" in r.stderr
    r = beepnet("model", "convert", str(old), str(new))
    assert r.returncode == 0, r.stderr
    assert "beep, music, other, speech, tonal, washer" in r.stdout
    converted, shipped = read_model_file(new), read_model_file(SHIPPED)
    assert converted.threshold == shipped.threshold and converted.labels == shipped.labels
    assert converted.meta["created"] == shipped.meta["created"]
    for k, v in shipped.tensors.items():
        assert np.array_equal(converted.tensors[k], v), k
    # The converted file scores as the original did, in both runtimes.
    assert worker(_scores_by_torch, str(new)) == worker(_scores_by_torch, str(SHIPPED))
    r = beepnet("detect", "--json", "--model", str(new), str(DEMO))
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_a_conversion_never_leaves_a_file_nothing_loads(worker, tmp_path):
    old, new = tmp_path / "bad.pt", tmp_path / "bad.safetensors"
    worker(_write_legacy, str(old), True)
    r = beepnet("model", "convert", str(old), str(new))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "threshold" in r.stderr
    assert not new.exists()
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    r = beepnet("model", "convert", str(tmp_path / "junk.pt"), str(new))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = beepnet("model", "convert", str(tmp_path / "nope.pt"), str(new))
    assert r.returncode == 1 and "no such file" in r.stderr


# --- without torch ------------------------------------------------------------------------

_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # as on a Pi without the train extra: `import torch` fails
from beepnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args, status, says", [
    (["detect", "--set", "detector.runtime=torch", str(DEMO)], 78, "pip install 'beepnet[train]'"),
    (["model", "convert", "old.pt", "new.safetensors"], 1, "pip install 'beepnet[train]'"),
    (["train", "data", "--out", "m.safetensors"], 1, "pip install 'beepnet[train]'"),
    (["detect", "--json", str(DEMO)], 0, '"score"'),
])
def test_without_torch(tmp_path, args, status, says):
    """The runtime works; what needs torch says which extra brings it, in one line."""
    r = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *args], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == status, r.stderr
    out = r.stdout if status == 0 else r.stderr
    assert says in out and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    if status:
        assert r.stderr.count("\n") == 1, r.stderr
