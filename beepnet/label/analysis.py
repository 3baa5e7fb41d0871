"""Reading, measuring and scoring clips for the labeller, once each, ahead of the user.

The measurements (spectrum.py) are cheap and made on demand; the model is not: loading it
takes a moment, and scoring a few ms to 100 ms a clip on a Pi. So the model is loaded by a
background thread the first time a clip needs scoring, and that thread keeps scoring the next
few clips in the queue while the user looks at the current one. Each clip is scored once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..audio.files import AudioFileError, read_audio
from ..detectors.base import Detector
from .core import Analysis, Clip, ModelView
from .spectrum import SAMPLE_RATE, ClipLook, look

log = logging.getLogger(__name__)

CACHE_SIZE = 256
"""Analyses kept (about 16 kB each): the look-ahead, plus history for runs and undo."""


def _beepnet_detector(path: Path | None) -> Detector:
    from ..detectors.beepnet import BeepNetDetector  # the model code loads only from here on

    return BeepNetDetector(path)


class ModelState:
    OFF = "off"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class Analyser:
    """Measures and (with a model) scores clips; thread-safe, caches by path."""

    def __init__(self, model: str | os.PathLike | None, use_model: bool = True,
                 make_detector: Callable[[Path | None], Detector] | None = None) -> None:
        """``model``: a BeepNet model file, or None for the shipped one; ``use_model`` False
        means no suggestions at all. ``make_detector`` builds the detector from
        the model path (default: BeepNet; tests pass a fake)."""
        self.model_path = Path(model).expanduser() if model else None
        self._make_detector = make_detector or _beepnet_detector
        self.model_state = ModelState.LOADING if use_model else ModelState.OFF
        self.model_error = "" if use_model else "no model (--no-model)"
        self.model_name = ""
        self._detector = None
        self._looks: OrderedDict[Path, tuple[ClipLook | None, str | None]] = OrderedDict()
        self._views: OrderedDict[Path, ModelView | None] = OrderedDict()
        self._lock = threading.Lock()         # guards the two caches
        self._model_lock = threading.Lock()   # one model call (or the load) at a time
        self.scored = 0
        """How many times the model ran (tests check each clip is scored once)."""

    # -- measurements --------------------------------------------------------------------------

    def _read(self, path: Path):
        try:
            return read_audio(path, SAMPLE_RATE), None
        except AudioFileError as e:
            return None, str(e)
        except Exception as e:
            log.debug("reading %s failed", path, exc_info=True)
            return None, f"unreadable ({type(e).__name__}: {e})"

    def look(self, clip: Clip) -> tuple[ClipLook | None, str | None]:
        """(measurements, None) or (None, why the file is not usable audio)."""
        with self._lock:
            hit = self._looks.get(clip.path)
        if hit is not None:
            return hit
        audio, error = self._read(clip.path)
        if audio is not None and not len(audio):
            audio, error = None, "holds no audio"
        result = (look(audio) if audio is not None else None, error)
        with self._lock:
            self._remember(self._looks, clip.path, result)
        return result

    @staticmethod
    def _remember(cache: OrderedDict, key: Path, value) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    # -- the model -----------------------------------------------------------------------------

    def _load_model(self) -> None:
        """Load the model (called with _model_lock held)."""
        try:
            det = self._make_detector(self.model_path)
        except ImportError as e:
            self.model_error = (f"{e.name or e} is not installed; see the README to "
                                "install it, or label without suggestions")
            self.model_state = ModelState.FAILED
            return
        except ValueError as e:  # ModelFileError: missing, corrupt, wrong format
            self.model_error = str(e)
            self.model_state = ModelState.FAILED
            return
        except Exception as e:
            log.warning("cannot load the model", exc_info=True)
            self.model_error = f"{type(e).__name__}: {e}"
            self.model_state = ModelState.FAILED
            return
        self._detector = det
        self.model_name = det.describe()
        self.model_state = ModelState.READY

    def cached_view(self, clip: Clip) -> tuple[bool, ModelView | None]:
        """(known, view): whether the clip has been scored (or cannot be), and the result."""
        if self.model_state in (ModelState.OFF, ModelState.FAILED):
            return True, None
        with self._lock:
            if clip.path in self._views:
                return True, self._views[clip.path]
        return False, None

    def view(self, clip: Clip) -> ModelView | None:
        """The model's verdict, scoring the clip if it has not been (blocks for the model)."""
        known, v = self.cached_view(clip)
        if known:
            return v
        with self._model_lock:
            if self.model_state == ModelState.LOADING:
                self._load_model()
            known, v = self.cached_view(clip)  # scored meanwhile, or the model failed
            if known:
                return v
            audio, _ = self._read(clip.path)
            v = None
            if audio is not None and len(audio):
                try:
                    s = self._detector.score(audio)
                    self.scored += 1
                    v = ModelView(float(s.score), dict(s.labels), float(self._detector.threshold))
                except Exception:
                    log.warning("scoring %s failed", clip.path, exc_info=True)
            with self._lock:
                self._remember(self._views, clip.path, v)
        return v

    def analysis(self, clip: Clip, wait: bool = False) -> tuple[Analysis, bool]:
        """(analysis, complete). Without ``wait`` the model part is left out when it is not
        ready yet (``complete`` False), so drawing never waits for the model."""
        lk, error = self.look(clip)
        if wait:
            return Analysis(lk, error, self.view(clip) if lk is not None else None), True
        known, v = self.cached_view(clip)
        return Analysis(lk, error, v), known or lk is None


class Prefetcher:
    """A daemon thread that measures and scores the clips the user will see next."""

    def __init__(self, analyser: Analyser) -> None:
        self.analyser = analyser
        self._want: list[Clip] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="label-prefetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def want(self, clips: list[Clip]) -> None:
        """The clips to have ready, most urgent first (replaces the previous wish)."""
        with self._cond:
            self._want = list(clips)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        # Not joined for long: a model call finishes within a second; the thread is a daemon.
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                wanted = list(self._want)
            try:
                todo = None
                for c in wanted:
                    lk, _ = self.analyser.look(c)
                    if lk is not None and not self.analyser.cached_view(c)[0]:
                        todo = c
                        break
                if todo is not None:
                    self.analyser.view(todo)
                    continue
            except Exception:
                log.warning("prefetch failed", exc_info=True)
            with self._cond:
                if not self._stop:
                    self._cond.wait(timeout=1.0)
