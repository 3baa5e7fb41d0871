"""The numpy runtime (detector.runtime = "numpy"): the same scores as torch, without torch.

The numpy side runs in this pytest process, which never imports torch (a child started
from a big process inherits its peak-RSS figure, which test_detect measures); everything
torch does runs in one spawned worker or in `beepnet` subprocesses, as in
test_beepnet_model.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from procs import children, comm, run_beepnet
from signals import convert, washer_with_beeps

from beepnet import synth
from beepnet.detectors.beepnet import BeepNetDetector
from beepnet.model import torchfile
from beepnet.model.modelfile import ModelFileError
from beepnet.model.npnet import Arch, load_numpy_model, softmax
from beepnet.testing.procs import memory_kb

SR = 16000
REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "beepnet-default.pt"
LABELS = ["beep", "other", "washer"]
# Not the defaults: 4 blocks (dilations 1, 2, 4, 6), pooling by 3, another filter size.
ODD_ARCH = {"n_classes": 3, "n_filters": 12, "kernel": 256, "stride": 128,
            "channels": (10, 14, 9, 11), "pool": 3}
LENGTHS = (400, 3 * SR, int(3.7 * SR))
TOL = 1e-4
NUMPY_RSS_MB = 100
"""Peak RSS bound for a process with the numpy runtime (about 40 MB measured, torch's 260)."""

needs_shipped = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model (make model)")


beepnet = run_beepnet


def windows() -> list[np.ndarray]:
    """Noise, and room tone with a beep, at each length in LENGTHS."""
    rng = np.random.default_rng(5)
    out = []
    for n in LENGTHS:
        out.append((rng.standard_normal(n) * 0.1).astype(np.float32))
        w = synth.room(rng, max(n, SR) / SR)[:n].copy()
        b = synth.beep(2900.0, 0.3)[:n]
        at = min(n - len(b), SR // 2)
        w[at:at + len(b)] += 0.3 * b
        out.append(w.astype(np.float32))
    return out


# --- cases run in the worker ------------------------------------------------------------


def _make_random_model(path: str) -> None:
    """A fresh net of ODD_ARCH with random BatchNorm statistics (so folding them matters)."""
    import torch

    from beepnet.model.io import save_model
    from beepnet.model.net import BeepNet, NetConfig

    torch.manual_seed(3)
    net = BeepNet(NetConfig(**ODD_ARCH))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    save_model(path, net.eval(), LABELS, 0.4)


def _torch_outputs(path: str, waves: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Clip probabilities and per-class frame probabilities of each wave, by torch."""
    import torch

    from beepnet.model.io import load_model

    torch.set_num_threads(1)
    net = load_model(path).net
    out = []
    with torch.inference_mode():
        for w in waves:
            clip, frames = net(torch.from_numpy(w[None]))
            out.append((torch.softmax(clip[0], 0).numpy(), torch.softmax(frames[0], 0).numpy()))
    return out


def _torch_scores(path: str, waves: list[np.ndarray]) -> list:
    from beepnet.detectors.beepnet import BeepNetDetector

    det = BeepNetDetector(path, runtime="torch")
    return [det.score(w) for w in waves]


def _net_config() -> tuple[dict, int]:
    from dataclasses import asdict

    from beepnet.model.net import SAMPLE_RATE, NetConfig

    return asdict(NetConfig()), SAMPLE_RATE


def _save_blobs(folder: str) -> dict[str, str]:
    """Model files that load_model refuses (or, "original", that only torch runs), and
    load_model's message for each."""
    import torch

    from beepnet.model.io import ModelFileError, load_model, save_model
    from beepnet.model.net import BeepNet, NetConfig
    from beepnet.model.original import OriginalBeepNet

    good = Path(folder) / "good.pt"
    torch.manual_seed(0)
    save_model(good, BeepNet(NetConfig(n_classes=3)).eval(), LABELS, 0.5)
    base = torch.load(good, weights_only=True)
    shapes = dict(base["state_dict"])
    shapes["body.0.weight"] = torch.zeros(64, 64, 3)
    extra = dict(base["state_dict"], **{"body.99.weight": torch.zeros(1)})
    variants = {
        "wrong-format": {"format": "something-else"},
        "not-a-dict": [1, 2, 3],
        "version": dict(base, format_version=2),
        "rate": dict(base, sample_rate=8000),
        "labels": dict(base, labels=["a", "b", "c"]),
        "threshold": dict(base, threshold=1.5),
        "outputs": dict(base, labels=["beep", "other"]),
        "shape": dict(base, state_dict=shapes),
        "extra-key": dict(base, state_dict=extra),
        "arch": dict(base, arch={**base["arch"], "depth": 3}),
    }
    messages = {}
    for name, blob in variants.items():
        path = Path(folder) / f"{name}.pt"
        torch.save(blob, path)
        try:
            load_model(path)
            messages[name] = "loaded"
        except ModelFileError as e:
            messages[name] = str(e)
    save_model(Path(folder) / "original.pt", OriginalBeepNet().eval(), ["beep", "other"], 0.5)
    return messages


# --- parity ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_model(tmp_path_factory, worker) -> str:
    path = str(tmp_path_factory.mktemp("npnet") / "odd.pt")
    worker(_make_random_model, path)
    return path


def _model_path(which: str, random_model: str) -> str:
    if which == "shipped":
        if not SHIPPED.exists():
            pytest.skip("no shipped model (make model)")
        return str(SHIPPED)
    return random_model


@pytest.mark.parametrize("which", ["shipped", "random-init"])
def test_probabilities_equal_torchs(worker, random_model, which):
    path = _model_path(which, random_model)
    waves = windows()
    expected = worker(_torch_outputs, path, waves)
    net = load_numpy_model(path).net
    for w, (clip_t, frames_t) in zip(waves, expected):
        clip, frames = net(w[None])
        assert frames.shape[1:] == frames_t.shape, (len(w), frames.shape, frames_t.shape)
        np.testing.assert_allclose(softmax(clip[0]), clip_t, rtol=0, atol=TOL)
        np.testing.assert_allclose(softmax(frames[0], axis=0), frames_t, rtol=0, atol=TOL)


@pytest.mark.parametrize("which", ["shipped", "random-init"])
def test_detector_scores_and_spans_equal_torchs(worker, random_model, which):
    """The whole detector, a window shorter than one filter (padded) included."""
    path = _model_path(which, random_model)
    waves = windows() + [synth.beep(3000.0, 0.005)]  # 80 samples
    expected = worker(_torch_scores, path, waves)
    det = BeepNetDetector(path, runtime="numpy")
    assert "numpy runtime" in det.describe() and det.threshold == load_numpy_model(path).threshold
    for w, want in zip(waves, expected):
        got = det.score(w)
        assert got.labels.keys() == want.labels.keys()
        for k in want.labels:
            assert abs(got.labels[k] - want.labels[k]) < TOL, (len(w), k, got, want)
        assert (got.start is None) == (want.start is None), (got, want)
        if want.start is not None:
            assert abs(got.start - want.start) < 0.011 and abs(got.end - want.end) < 0.011


def test_arch_mirrors_netconfig(worker):
    from dataclasses import asdict

    from beepnet.model.modelfile import SAMPLE_RATE

    fields, rate = worker(_net_config)
    assert {**asdict(Arch()), "channels": tuple(asdict(Arch())["channels"])} == \
        {**fields, "channels": tuple(fields["channels"])}
    assert rate == SAMPLE_RATE


# --- bad files ------------------------------------------------------------------------------


def _one_line_error(path: Path) -> str:
    with pytest.raises(ModelFileError) as e:
        load_numpy_model(path)
    text = str(e.value)
    assert "\n" not in text and str(path) in text, text
    return text


def _archive(path: Path, pkl: bytes, members: dict[str, bytes] | None = None) -> Path:
    """A zip laid out like torch.save's, holding ``pkl`` as its data.pkl."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for name, data in (members or {}).items():
            z.writestr(f"archive/{name}", data)
    return path


def _unicode(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


@pytest.mark.parametrize("kind", ["junk", "empty", "truncated", "flipped", "zip-no-pickle"])
def test_damaged_files_are_one_line(tmp_path, kind):
    path = tmp_path / "bad.pt"
    shipped = SHIPPED.read_bytes() if SHIPPED.exists() else b""
    if kind in ("truncated", "flipped") and not shipped:
        pytest.skip("no shipped model (make model)")
    if kind == "junk":
        path.write_bytes(b"not a model at all" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(shipped[: len(shipped) // 2])
    elif kind == "flipped":  # inside the first weights: the member's CRC fails
        data = bytearray(shipped)
        data[shipped.index(b"archive/data/0") + 200] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    assert "not a readable BeepNet model" in _one_line_error(path)
    assert "no such file" in _one_line_error(tmp_path / "missing.pt")


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_naming_os_system_never_runs(tmp_path, protocol):
    marker = tmp_path / "ran"
    call = _unicode(f"touch {marker}") + b"\x85R."  # TUPLE1, REDUCE, STOP
    if protocol == 2:
        pkl = b"\x80\x02cos\nsystem\n" + call
    else:  # STACK_GLOBAL, as pickle protocol 4 names globals
        pkl = b"\x80\x04" + _unicode("os") + _unicode("system") + b"\x93" + call
    path = _archive(tmp_path / "evil.pt", pkl)
    text = _one_line_error(path)
    assert "os.system" in text, text
    # The same call hidden inside an otherwise plausible model dict.
    nested = (b"\x80\x02}(" + _unicode("format") + _unicode("beepnet-model")
              + _unicode("state_dict") + b"cos\nsystem\n" + call[:-1] + b"u.")
    text = _one_line_error(_archive(tmp_path / "evil2.pt", nested))
    assert "os.system" in text, text
    # What pickle itself writes for os.system on Linux, and builtins.eval.
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    assert "system" in _one_line_error(_archive(tmp_path / "evil3.pt", pickle.dumps(Evil())))
    evil_eval = b"\x80\x02cbuiltins\neval\n" + _unicode(f"open('{marker}', 'w')") + b"\x85R."
    assert "builtins.eval" in _one_line_error(_archive(tmp_path / "evil4.pt", evil_eval))
    time.sleep(0.2)
    assert not marker.exists()


def test_tensor_views_stay_inside_their_storage():
    storage = np.arange(10, dtype=np.float32)
    view = torchfile._rebuild_tensor_v2(storage, 2, (2, 3), (3, 1))
    assert view.tolist() == [[2, 3, 4], [5, 6, 7]] and view.flags.c_contiguous
    for offset, size, stride in [(5, (3,), (3,)), (11, (1,), (1,)), (0, (2,), (-1,)),
                                 (-1, (1,), (1,)), (0, (2, 2), (1,)), (0, [2], [1])]:
        with pytest.raises(torchfile.TorchFileError):
            torchfile._rebuild_tensor_v2(storage, offset, size, stride)


def test_a_storage_shorter_than_it_claims_is_refused(tmp_path):
    pkl = (b"\x80\x02}(" + _unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(("
           + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("0") + _unicode("cpu")
           + b"K\x08tQK\x00K\x08\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRu.")
    path = _archive(tmp_path / "short.pt", pkl, {"data/0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(torchfile.TorchFileError, match="cut short"):
        torchfile.load(path)
    path = _archive(tmp_path / "ok.pt", pkl, {"data/0": np.arange(8, dtype="<f4").tobytes()})
    assert torchfile.load(path)["w"].tolist() == list(range(8))


def test_refused_files_give_load_models_messages(worker, tmp_path):
    expected = worker(_save_blobs, str(tmp_path))
    for name, message in expected.items():
        assert message != "loaded", name
        got = _one_line_error(tmp_path / f"{name}.pt")
        if name in ("shape", "extra-key", "arch"):  # the reason in brackets is torch's own
            head = "weights do not fit the BeepNet architecture"
            assert head in got and head in message, (name, got, message)
        else:
            assert got == message, name
    text = _one_line_error(tmp_path / "original.pt")
    assert "original" in text and 'detector.runtime = "torch"' in text, text


# --- the runtime in the commands and the daemon --------------------------------------------


@needs_shipped
def test_detect_with_the_numpy_runtime_finds_the_same_events(tmp_path):
    beeps = [(2.8, 0.5, 2900.0), (8.0, 0.25, 4100.0), (21.0, 1.0, 3300.0)]
    path = convert(washer_with_beeps(beeps, 27.0, seed=7, snr_db=15.0), tmp_path / "w.wav")
    events = {}
    for runtime in ("torch", "numpy"):
        r = beepnet("detect", "--json", "--set", "detector.kind=beepnet",
                    "--set", f"detector.runtime={runtime}", str(path))
        assert r.returncode == 0, r.stderr
        events[runtime] = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(events["torch"]) >= 2, events
    assert len(events["numpy"]) == len(events["torch"]), events
    for a, b in zip(events["numpy"], events["torch"]):
        assert (a["start"], a["end"]) == (b["start"], b["end"]), (a, b)
        assert abs(a["score"] - b["score"]) <= 2e-4, (a, b)
    r = beepnet("detect", "--set", "detector.runtime=fast", str(path))
    assert r.returncode == 78 and "detector.runtime" in r.stderr and "'numpy'" in r.stderr


_MEASURE = """
import json, sys
import numpy as np
from beepnet.config import DetectorConfig
from beepnet.detectors import load_detector
det = load_detector(DetectorConfig(kind="beepnet", runtime=sys.argv[1]))
rng = np.random.default_rng(0)
for _ in range(20):
    det.score((rng.standard_normal(48000) * 0.1).astype(np.float32))
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"torch": "torch" in sys.modules, "hwm_kb": hwm}))
"""


@needs_shipped
def test_numpy_runtime_never_imports_torch_and_needs_far_less_memory():
    out = {}
    for runtime in ("numpy", "torch"):
        r = subprocess.run([sys.executable, "-c", _MEASURE, runtime], capture_output=True,
                           text=True, timeout=120, cwd=REPO, check=False)
        assert r.returncode == 0, r.stderr
        out[runtime] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["numpy"]["torch"] is False and out["torch"]["torch"] is True
    numpy_mb, torch_mb = out["numpy"]["hwm_kb"] / 1024, out["torch"]["hwm_kb"] / 1024
    assert numpy_mb < NUMPY_RSS_MB, out
    assert numpy_mb < torch_mb / 2, out


@needs_shipped
def test_daemon_classifier_runs_numpy_without_torch(tmp_path):
    """`beepnet run` replaying a file: the classifier child maps no torch library, stays
    small, and its alerts name the runtime."""
    beeps = [(4.0, 0.6, 2800.0), (14.0, 0.5, 3600.0)]
    path = convert(washer_with_beeps(beeps, 20.0, seed=11, snr_db=15.0), tmp_path / "c.wav")
    p = subprocess.Popen(
        [sys.executable, "-m", "beepnet", "run", "--source", str(path), "--speed", "4",
         "--set", f"storage.dir={tmp_path / 'state'}", "--set", "detector.kind=beepnet",
         "--set", "detector.runtime=numpy", "--set", "notify.cooldown_minutes=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_kb, torch_maps, seen = 0, False, False
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            for c in children(p.pid):
                if comm(c) != "beepnet-clf":
                    continue
                try:
                    maps = Path(f"/proc/{c}/maps").read_text()
                except OSError:
                    continue
                seen = True
                torch_maps = torch_maps or "torch" in maps
                peak_kb = max(peak_kb, memory_kb(c).get("VmHWM", 0))
            time.sleep(0.1)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert seen and not torch_maps, err
    assert 0 < peak_kb / 1024 < NUMPY_RSS_MB, peak_kb
    records = [json.loads(r.read_text()) for r in (tmp_path / "state" / "alerts").glob("*.json")]
    assert records, out + err
    assert all("numpy runtime" in r["detector"] for r in records), records


_THREADS = """
import ctypes, json
import numpy as np
from beepnet.detectors.beepnet import BeepNetDetector
libs = {l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l.lower() and ".so" in l}
getters = [getattr(ctypes.CDLL(lib), name) for lib in sorted(libs)
           for name in ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_")
           if hasattr(ctypes.CDLL(lib), name)]
before = [g() for g in getters]
BeepNetDetector(runtime="numpy")
print(json.dumps({"before": before, "after": [g() for g in getters]}))
"""


@needs_shipped
def test_numpy_runtime_runs_blas_on_one_thread():
    """Without OPENBLAS_NUM_THREADS, numpy's OpenBLAS starts a thread per core; the
    detector turns that down to one."""
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True,
                       timeout=120, cwd=REPO, env=env, check=False)
    assert r.returncode == 0, r.stderr
    threads = json.loads(r.stdout.strip().splitlines()[-1])
    assert threads["after"] and set(threads["after"]) == {1}, threads


def test_this_test_process_never_loaded_torch():
    """Everything above ran the numpy runtime here; torch stayed in the worker."""
    assert "torch" not in sys.modules
