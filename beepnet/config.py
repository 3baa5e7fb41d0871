"""The one typed configuration, validated once at start.

Sources, later ones winning:

1. built-in defaults (the dataclasses below),
2. one TOML file, the first of: ``--config PATH``, ``$BEEPNET_CONFIG``, the user's
   ``$XDG_CONFIG_HOME/beepnet/beepnet.toml`` (``~/.config/beepnet/beepnet.toml``), and the
   system's ``/etc/beepnet/beepnet.toml`` (what the service installer writes). Only that one
   file is read: a user's file shadows /etc entirely, so what ``beepnet config`` prints is
   all there is (``beepnet config --example`` prints a commented one),
3. the environment (``ENV_OVERRIDES``: ``BEEPNET_TELEGRAM_TOKEN``, ``BEEPNET_TELEGRAM_CHAT_ID``,
   ``BEEPNET_MQTT_PASSWORD`` ...), and the systemd credentials (``CREDENTIALS``:
   ``$CREDENTIALS_DIRECTORY/telegram-token``, ``mqtt-password``, ``apprise-urls``),
4. ``--set section.key=value`` on the command line (repeatable; never the token, which
   every user could read in ``ps``).

Any bad value or unknown key raises :class:`ConfigError`, whose message is one line naming
the key and what is allowed; the CLI turns it into exit status 78 (EX_CONFIG), which the
systemd unit lists in ``RestartPreventExitStatus`` so that a typo does not restart-loop.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .audio import SAMPLE_RATE

EX_CONFIG = 78

ENV_OVERRIDES = {
    "BEEPNET_TELEGRAM_TOKEN": ("telegram", "token"),
    "BEEPNET_TELEGRAM_CHAT_ID": ("telegram", "chat_id"),
    "BEEPNET_MQTT_PASSWORD": ("mqtt", "password"),
    "BEEPNET_APPRISE_URLS": ("notify", "apprise_urls"),
    "BEEPNET_HEARTBEAT_URL": ("notify", "heartbeat_url"),
}

CREDENTIALS = {
    "telegram-token": ("telegram", "token"),
    "mqtt-password": ("mqtt", "password"),
    "apprise-urls": ("notify", "apprise_urls"),
}
"""systemd credentials (LoadCredential=) and the secret each one sets."""

DEFAULT_API_URL = "https://api.telegram.org"
EXAMPLE = Path(__file__).with_name("example.toml")

SYSTEM_CONFIG = Path("/etc/beepnet/beepnet.toml")
"""The system-wide file, read when no other is given or found (tests patch this name)."""


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


def _opt(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None, secret: bool = False) -> Any:
    """A config field with its documentation and limits, checked by :func:`_check`."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "secret": secret}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class AudioConfig:
    device: str = _opt("default", "input device: 'default', its index, or part of its name")
    chunk_seconds: float = _opt(3.0, "length of each analysed chunk", lo=0.5, hi=30.0)
    hop_seconds: float = _opt(
        1.5, "start of one chunk to the start of the next; less than chunk_seconds overlaps "
        "them so that a beep on a chunk boundary is whole in one of them", lo=0.1, hi=30.0)
    gate_dbfs: float = _opt(
        -50.0, "a chunk is kept only if one of its short frames is louder than this "
        "(dBFS; -120 keeps everything)", lo=-120.0, hi=0.0)
    gate_frame_ms: float = _opt(20.0, "frame length for the gate's level", lo=5.0, hi=500.0)
    block_ms: float = _opt(100.0, "how much audio the recorder reads at a time", lo=10.0, hi=1000.0)

    @property
    def sample_rate(self) -> int:
        """Everything after capture runs at 16 kHz mono; the device's native rate is converted."""
        return SAMPLE_RATE


@dataclass(frozen=True)
class DetectorConfig:
    kind: str = _opt("beepnet", "which detector scores the chunks: 'beepnet' (the learned "
                     "model) or 'tone' (DSP, no model)", choices=("beepnet", "tone"))
    model: str = _opt("", "model file for kind = 'beepnet' (empty: the shipped default)")
    runtime: str = _opt(
        "numpy", "what runs the model for kind = 'beepnet': 'numpy' (no torch needed), or "
        "'torch' (the same scores; needs the train extra and about 220 MB more memory; "
        "the only one that runs models trained with --arch original)",
        choices=("numpy", "torch"))
    threshold: float = _opt(
        0.0, "score from which a chunk counts as a beep, 0..1 (0: the detector's own "
        "operating threshold)", lo=0.0, hi=1.0)
    tone_min_hz: float = _opt(1000.0, "tone detector: lowest beep frequency", lo=100.0, hi=7900.0)
    tone_max_hz: float = _opt(6000.0, "tone detector: highest beep frequency", lo=100.0, hi=7900.0)
    tone_min_ms: float = _opt(40.0, "tone detector: shortest beep", lo=5.0, hi=2000.0)


@dataclass(frozen=True)
class TelegramConfig:
    token: str = _opt("", "bot token from @BotFather (better: $BEEPNET_TELEGRAM_TOKEN)",
                      secret=True)
    chat_id: str = _opt("", "chat to alert: a numeric id (or @channelname)")
    api_url: str = _opt(DEFAULT_API_URL, "root of the Bot API server; requests go to "
                        "{api_url}/bot{token}/{method}")
    allowed_user_ids: str = _opt(
        "", "in a group chat, the user ids that may command the bot, separated by commas "
        "(empty: every member of the chat; other chats never may)")

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.chat_id)

    @property
    def allowed_users(self) -> frozenset[int]:
        return frozenset(int(x) for x in re.split(r"[,\s]+", self.allowed_user_ids) if x)


@dataclass(frozen=True)
class NotifyConfig:
    name: str = _opt("", "this listener's short name, the room or the appliance ('garage', "
                     "'washer'): messages begin with it (empty: they name the microphone "
                     "only)")
    cooldown_minutes: float = _opt(2.0, "at most one beep alert per this many minutes",
                                   lo=0.0, hi=24 * 60.0)
    retry_initial_seconds: float = _opt(1.0, "first wait before re-sending after a network "
                                        "error (doubles each time, with jitter)", lo=0.01,
                                        hi=600.0)
    retry_max_seconds: float = _opt(300.0, "longest wait between re-sends", lo=0.1,
                                    hi=3600.0)
    outbox_max_age_hours: float = _opt(48.0, "undelivered messages older than this are "
                                       "dropped (and the drop reported)", lo=0.01, hi=24 * 365.0)
    outbox_max_mb: float = _opt(50.0, "the outbox keeps at most this much; oldest dropped "
                                "first", lo=0.1, hi=100000.0)
    apprise_urls: str = _opt(
        "", "more channels (ntfy, Pushover, Gotify, Discord, e-mail ...): Apprise URLs "
        "separated by spaces or commas; they carry secrets, so better in "
        "$BEEPNET_APPRISE_URLS, the credential apprise-urls, or apprise_file", secret=True)
    apprise_file: str = _opt("", "a file of Apprise URLs, one per line ('#' comments); "
                             "keep it readable by the service only")
    quiet_hours: str = _opt("", "when finished messages and reminders wait, e.g. "
                            "'22:00-07:00' (may cross midnight; empty: never)")
    quiet_mode: str = _opt("hold", "during quiet hours: 'hold' messages until they end, or "
                           "send them 'silent' (no sound on the phone)",
                           choices=("hold", "silent"))
    quiet_faults: str = _opt("silent", "faults (microphone lost, detector failed) during "
                             "quiet hours: 'silent', 'normal', or 'hold' like the rest",
                             choices=("silent", "normal", "hold"))
    heartbeat_url: str = _opt(
        "", "a URL called every heartbeat_minutes while listening works (healthchecks.io, "
        "Uptime Kuma push, ntfy): when the calls stop, that service tells you. Better in "
        "$BEEPNET_HEARTBEAT_URL", secret=True)
    heartbeat_minutes: float = _opt(5.0, "how often the heartbeat_url is called", lo=0.05,
                                    hi=24 * 60.0)
    digest: str = _opt("", "a summary message: 'daily 09:00' or 'weekly mon 09:00' "
                       "(empty: none)")


@dataclass(frozen=True)
class MqttConfig:
    """Home Assistant over MQTT (`beepnet.mqtt`): off while ``host`` is empty."""

    host: str = _opt("", "the MQTT broker's host name or address (empty: no MQTT)")
    port: int = _opt(1883, "the broker's port (8883 is usual with tls)", lo=1, hi=65535)
    username: str = _opt("", "user name at the broker (empty: none)")
    password: str = _opt("", "password at the broker (better: $BEEPNET_MQTT_PASSWORD or "
                         "the credential mqtt-password)", secret=True)
    tls: bool = _opt(False, "connect with TLS (the system's CAs, or ca_file)")
    ca_file: str = _opt("", "a CA certificate file for tls (empty: the system's)")
    base_topic: str = _opt("beepnet", "beepnet's topics are <base_topic>/<device_id>/...")
    discovery_prefix: str = _opt("homeassistant", "Home Assistant's discovery prefix")
    device_id: str = _opt("", "this listener's id at the broker, unique per listener "
                          "(empty: host name and appliance, e.g. 'garagepi_washer')")
    appliance: str = _opt("", "the appliance this listener hears (empty: cycle.machine)")
    level_seconds: float = _opt(60.0, "the sound level is published at most this often",
                                lo=1.0, hi=3600.0)

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class CycleConfig:
    """The machine's cycle (`beepnet.cycle`): when it runs, finished, stopped; reminders."""

    machine: str = _opt("washer", "what the owner calls the machine, in messages ('washer', "
                        "'dryer', 'dishwasher')")
    machine_score: float = _opt(0.5, "the classifier's 'washer' score from which a window "
                                "counts as the machine running", lo=0.01, hi=1.0)
    tell_start: bool = _opt(False, "send a message when a cycle starts")
    start_minutes: float = _opt(2.0, "machine sound this long (within start_window_minutes) "
                                "is a cycle running", lo=0.05, hi=60.0)
    start_window_minutes: float = _opt(5.0, "the span start_minutes of sound must fit in",
                                       lo=0.05, hi=120.0)
    pause_minutes: float = _opt(1.0, "machine quiet this long is a pause in the cycle",
                                lo=0.02, hi=120.0)
    quiet_minutes: float = _opt(10.0, "machine quiet this long with no beep: it stopped "
                                "without a beep", lo=0.1, hi=24 * 60.0)
    late_beep_minutes: float = _opt(60.0, "a beep this long after a stopped cycle's last "
                                    "sound still finishes it", lo=0.2, hi=24 * 60.0)
    long_factor: float = _opt(1.4, "say so once when a cycle runs this many times its usual "
                              "length", lo=1.01, hi=10.0)
    no_beep_minutes: float = _opt(150.0, "with no usual length known yet, say 'no beep yet' "
                                  "when a cycle has run this long", lo=0.01, hi=7 * 24 * 60.0)
    remind_minutes: float = _opt(30.0, "'still in the machine': a reminder this often after "
                                 "it finished, until emptied", lo=0.01, hi=24 * 60.0)
    max_reminders: int = _opt(6, "reminders at most (0: none)", lo=0, hi=100)

    def settings(self):
        """The cycle machine's timing rules (`beepnet.cycle.machine.CycleSettings`)."""
        from .cycle.machine import CycleSettings

        try:
            return CycleSettings(
                start_minutes=self.start_minutes,
                start_window_minutes=self.start_window_minutes,
                pause_minutes=self.pause_minutes, quiet_minutes=self.quiet_minutes,
                late_beep_minutes=self.late_beep_minutes, long_factor=self.long_factor,
                no_beep_minutes=self.no_beep_minutes, remind_minutes=self.remind_minutes,
                max_reminders=self.max_reminders)
        except ValueError as e:
            raise ConfigError(str(e)) from None


_RENAMED = {"watch.timeout_minutes": "cycle.no_beep_minutes", "watch.idle_minutes": None}
"""Keys of beepnet 0.2's [watch], which [cycle] replaced: read on, with a note."""


def _default_storage_dir() -> str:
    # systemd's StateDirectory= sets $STATE_DIRECTORY; elsewhere follow XDG.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return os.path.join(base, "beepnet")


def _default_runtime_dir() -> str:
    # systemd's RuntimeDirectory= (tmpfs under /run) keeps live chunks off the SD card.
    return os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]


@dataclass(frozen=True)
class StorageConfig:
    dir: str = _opt("", "everything the daemon writes: chunks, outbox, kept clips "
                    "(empty: $STATE_DIRECTORY or ~/.local/share/beepnet)")
    runtime_dir: str = _opt("", "RAM-backed directory for live chunks (empty: "
                            "$RUNTIME_DIRECTORY if set, else <dir>/chunks)")
    max_backlog_chunks: int = _opt(40, "chunks waiting for the classifier before the oldest "
                                   "are dropped", lo=1, hi=100000)
    keep_days: float = _opt(90.0, "alert clips and records older than this are deleted",
                            lo=0.01, hi=36500.0)
    keep_mb: float = _opt(500.0, "alert clips and records beyond this total are deleted, "
                          "oldest first", lo=1.0, hi=1e7)
    recent_minutes: float = _opt(10.0, "non-silent audio kept this long in the RAM-backed "
                                 "directory for /missed (0: none)", lo=0.0, hi=60.0)

    @property
    def path(self) -> Path:
        return Path(os.path.expanduser(self.dir or _default_storage_dir()))

    @property
    def chunk_dir(self) -> Path:
        runtime = self.runtime_dir or _default_runtime_dir()
        if runtime:
            return Path(os.path.expanduser(runtime)) / "chunks"
        return self.path / "chunks"

    @property
    def recent_dir(self) -> Path:
        """The last minutes of non-silent chunks (`beepnet.daemon.recent`), beside them."""
        return self.chunk_dir.parent / "recent"

    @property
    def feedback_dir(self) -> Path:
        """The owner's corrections and saved audio, in the layout `beepnet train` reads."""
        return self.path / "feedback"

    @property
    def alert_dir(self) -> Path:
        return self.path / "alerts"

    @property
    def outbox_dir(self) -> Path:
        return self.path / "outbox"

    @property
    def history_path(self) -> Path:
        """The cycle history (`beepnet.cycle.history`)."""
        return self.path / "cycles.db"


@dataclass(frozen=True)
class RetrainConfig:
    data_dir: str = _opt("", "labelled clips (<label>/*.wav) learned beside the owner's "
                         "corrections by `beepnet train --feedback` and /retrain (empty: "
                         "1500 generated ones)")
    epochs: int = _opt(6, "at most this many epochs of `beepnet train --feedback` and "
                       "/retrain", lo=1, hi=200)


@dataclass(frozen=True)
class RecordConfig:
    dir: str = _opt("data/unlabelled", "where `beepnet record` keeps its chunks")


@dataclass(frozen=True)
class LogConfig:
    level: str = _opt("info", "log level", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class Origin:
    """Where a config came from: told to the user at start, since a file that is never read
    looks exactly like one whose settings happen to be the defaults."""

    path: Path | None = None
    """The config file read, or None: built-in defaults (and environment, --set) only."""
    token_in_file: bool = False
    notes: tuple[str, ...] = ()
    """Warnings found while looking for the file, to be logged once logging is set up."""
    chosen: Any = None
    """The `beepnet.model.inuse.Chosen` that set detector.model (a model put in use where
    the config file could not be changed), or None: detector.model is the config's."""


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    cycle: CycleConfig = field(default_factory=CycleConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    log: LogConfig = field(default_factory=LogConfig)
    origin: Origin = field(default_factory=Origin, compare=False, metadata={"origin": True})


def sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)  # type: ignore[misc]
            if not f.metadata.get("origin")}


def _keys(section_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section_cls)}


def _allowed(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    kind = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}[
        _field_type(f)]
    if m.get("lo") is not None and m.get("hi") is not None:
        return f"{kind} from {_num(m['lo'])} to {_num(m['hi'])}"
    return kind


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _field_type(f: dataclasses.Field) -> type:
    # Annotations are strings under `from __future__ import annotations`.
    return {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(key: str, f: dataclasses.Field, value: Any, from_text: bool) -> Any:
    """Turn a raw value (TOML-typed, or text from --set / env) into the field's type."""
    kind = _field_type(f)
    bad = ConfigError(f"{key} = {value!r} is not allowed: expected {_allowed(f)}")
    if kind is str:
        if isinstance(value, bool) or isinstance(value, (dict, list)):
            raise bad
        # A chat id is naturally written as a TOML integer; accept numbers for text keys.
        return str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise bad
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        if not from_text:
            raise bad
        try:
            value = float(value.strip())
        except ValueError:
            raise bad from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if kind is int:
        if float(value) != int(value):
            raise bad
        return int(value)
    return float(value)


def _check(key: str, f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    if m.get("choices") and value not in m["choices"]:
        raise ConfigError(f"{key} = {value!r} is not allowed: expected {_allowed(f)}")
    lo, hi = m.get("lo"), m.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} = {value!r} is out of range: expected {_allowed(f)}")


def _unknown(section: str | None, key: str) -> ConfigError:
    if section is None:
        return ConfigError(f"unknown config section [{key}]: sections are "
                           + ", ".join(sections()))
    allowed = ", ".join(_keys(sections()[section]))
    return ConfigError(f"unknown config key {section}.{key}: [{section}] has {allowed}")


def _apply(raw: dict[str, dict[str, Any]], section: str, key: str, value: Any,
           from_text: bool) -> None:
    if section not in sections():
        raise _unknown(None, section)
    fields = _keys(sections()[section])
    if key not in fields:
        raise _unknown(section, key)
    full = f"{section}.{key}"
    converted = _convert(full, fields[key], value, from_text)
    _check(full, fields[key], converted)
    raw.setdefault(section, {})[key] = converted


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _parse(path: Path, text: str) -> dict[str, dict[str, Any]]:
    """A config file's TOML as {section: {key: value}}, values not yet validated."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    for section, table in data.items():
        if not isinstance(table, dict):
            if section in sections():
                raise ConfigError(f"config file {path}: [{section}] must be a table")
            raise _outside_section(path, section)
    return data


def _outside_section(path: Path, key: str) -> ConfigError:
    # TOML puts keys written above the first [section] line at the top level, where none
    # belongs: `device = "USB"` there is a key that lost its section, not a section.
    homes = [name for name, cls in sections().items() if key in _keys(cls)]
    if homes:
        where = " or ".join(f"[{h}]" for h in homes)
        return ConfigError(f"config file {path}: {key} is a key outside any section: it "
                           f"belongs under {where} (write it below the [{homes[0]}] line)")
    return ConfigError(f"config file {path}: {key} is a key outside any section, and no "
                       "section has a key of that name: sections are " + ", ".join(sections()))


_SET_RE = re.compile(r"^\s*([a-z_]+)\.([a-z_]+)\s*=(.*)$", re.S)


def parse_set(assignment: str) -> tuple[str, str, str]:
    """Split one ``--set section.key=value`` into its parts."""
    m = _SET_RE.match(assignment)
    if not m:
        # Only the name is echoed: the value may be a secret put in the wrong place.
        name = assignment.partition("=")[0].strip()
        homes = [f"{s}.{name}" for s, cls in sections().items()
                 if name in _keys(cls) and not _keys(cls)[name].metadata.get("secret")]
        hint = f" (did you mean {' or '.join(homes)}=...?)" if homes else ""
        raise ConfigError(f"--set {name}=... is not of the form section.key=value{hint}")
    value = m.group(3).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return m.group(1), m.group(2), value


def user_config(environ: Mapping[str, str]) -> Path:
    """The user's file, as the XDG base directory spec places it."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the spec: a relative value is to be ignored
        base = os.path.join(_home(environ), ".config")
    return Path(base) / "beepnet" / "beepnet.toml"


def _home(environ: Mapping[str, str]) -> str:
    # expanduser, unlike Path.home(), never raises (a user without a passwd entry).
    return environ.get("HOME") or os.path.expanduser("~")


def search_path(environ: Mapping[str, str]) -> list[Path]:
    """Where a config file is looked for when neither --config nor $BEEPNET_CONFIG names one."""
    return [user_config(environ), SYSTEM_CONFIG]


def _legacy_note(used: Path | None, environ: Mapping[str, str]) -> str | None:
    # The README once told people to write ~/.config/beepnet.toml, which nothing read.
    legacy = Path(_home(environ)) / ".config" / "beepnet.toml"
    if not legacy.exists() or (used is not None and _same(used, legacy)):
        return None
    target = user_config(environ)
    todo = (f"merge what you need into {target} and remove it" if target.exists() else
            f"move it there: mkdir -p {target.parent} && mv {legacy} {target}")
    return f"{legacy} is ignored: beepnet reads {target}; {todo}"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def find_file(path: Path | str | None, environ: Mapping[str, str]
              ) -> tuple[Path | None, str | None, list[str]]:
    """The config file to use, its text (None when there is none) and what to warn about.

    A file named by --config or $BEEPNET_CONFIG must be readable; one of the default places
    is used when it exists, and skipped with a warning when it cannot be read (a user
    running `beepnet` on a machine whose service config is root's alone still gets a run).
    """
    if path is None and environ.get("BEEPNET_CONFIG"):
        path = environ["BEEPNET_CONFIG"]
    if path is not None:
        return Path(path), _read_text(Path(path)), []
    notes: list[str] = []
    for candidate in search_path(environ):
        try:
            return candidate, candidate.read_text(encoding="utf-8"), notes
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            notes.append(f"config file {candidate} cannot be read ({_reason(e)}): not used; "
                         "run as a user who can read it, or give --config PATH")
    return None, None, notes


def load(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (),
         environ: Mapping[str, str] | None = None) -> Config:
    """Build and validate the config from all four sources."""
    environ = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {}
    used, text, notes = find_file(path, environ)
    token_in_file = False
    if used is not None and text is not None:
        data = _parse(used, text)
        token_in_file = bool(isinstance(data.get("telegram"), dict)
                             and data["telegram"].get("token"))
        for section, table in data.items():
            for key, value in table.items():
                if f"{section}.{key}" in _RENAMED:
                    target = _renamed(section, key, notes, used)
                    if target:
                        _apply(raw, *target, value, from_text=False)
                    continue
                _apply(raw, section, key, value, from_text=False)
    legacy = _legacy_note(used, environ)
    if legacy:
        notes.append(legacy)
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            _apply(raw, section, key, environ[var], from_text=True)
    for name, (section, key) in CREDENTIALS.items():
        secret = _credential(environ, name)
        if secret:
            _apply(raw, section, key, secret, from_text=True)
    for assignment in overrides:
        section, key, value = parse_set(assignment)
        if f"{section}.{key}" in _RENAMED:
            target = _renamed(section, key, notes, None)
            if not target:
                continue
            section, key = target
        _refuse_secret(section, key)
        _apply(raw, section, key, value, from_text=True)
    cfg = Config(**{name: cls(**raw.get(name, {})) for name, cls in sections().items()},
                 origin=Origin(used, token_in_file, tuple(notes)))
    cfg = _with_chosen_model(cfg)
    _cross_check(cfg)
    return cfg


def _renamed(section: str, key: str, notes: list[str], where: Path | None
             ) -> tuple[str, str] | None:
    """The key an old one became (and a note saying so, once), or None: not renamed, or
    gone (with a note that it is ignored)."""
    old = f"{section}.{key}"
    if old not in _RENAMED:
        return None
    new = _RENAMED[old]
    place = f" in {where}" if where is not None else ""
    note = (f"{old}{place} is now {new}: read as that, please rename it" if new else
            f"{old}{place} is no longer used (cycle.quiet_minutes decides when a cycle "
            "has ended): ignored")
    notes.append(note)
    return tuple(new.split(".")) if new else None  # type: ignore[return-value]


SERVICE_STATE = Path("/var/lib/beepnet")
"""The service's StateDirectory (systemd/beepnet.service)."""


def state_dir(cfg: Config) -> Path:
    """Where models, recordings and the owner's corrections are: storage.dir, except for the
    service's /etc config run by hand (with sudo): the service's StateDirectory, where the
    service keeps its own and which it can see (ProtectHome hides /root and /home)."""
    if (not cfg.storage.dir and not os.environ.get("STATE_DIRECTORY")
            and cfg.origin.path is not None and cfg.origin.path == SYSTEM_CONFIG):
        return SERVICE_STATE
    return cfg.storage.path


def _with_chosen_model(cfg: Config) -> Config:
    """detector.model from <state dir>/models/in-use.json while it applies (the config's
    detector.model is still what it was when that model was put in use: see
    `beepnet.model.inuse`)."""
    from .model import inuse

    chosen = inuse.read(state_dir(cfg))
    if not inuse.applies(chosen, cfg.detector.kind, cfg.detector.model):
        return cfg
    return dataclasses.replace(
        cfg, detector=dataclasses.replace(cfg.detector, model=chosen.model),
        origin=dataclasses.replace(cfg.origin, chosen=chosen))


def _refuse_secret(section: str, key: str) -> None:
    cls = sections().get(section)
    f = _keys(cls).get(key) if cls else None
    if f is None or not f.metadata.get("secret"):
        return
    env = next((var for var, where in ENV_OVERRIDES.items() if where == (section, key)), "")
    cred = next((n for n, where in CREDENTIALS.items() if where == (section, key)), "")
    raise ConfigError(f"--set {section}.{key} is refused: command-line arguments are "
                      f"visible to every user (ps); set {env} in the environment"
                      + (f", or use the systemd credential {cred} (systemd/README.md)"
                         if cred else ""))


def _credential(environ: Mapping[str, str], name: str) -> str:
    """A secret systemd passed with LoadCredential= (a file only this service can read)."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return ""
    try:
        return (Path(directory) / name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise ConfigError(f"credential {name} cannot be read: {e.strerror}") from None


def _cross_check(cfg: Config) -> None:
    a, d, t = cfg.audio, cfg.detector, cfg.telegram
    cfg.cycle.settings()  # the cycle's timings must fit together
    if a.hop_seconds > a.chunk_seconds:
        raise ConfigError(f"audio.hop_seconds = {a.hop_seconds} is out of range: expected at "
                          f"most audio.chunk_seconds ({a.chunk_seconds}), or audio is skipped")
    if d.tone_min_hz >= d.tone_max_hz:
        raise ConfigError(f"detector.tone_min_hz = {d.tone_min_hz} is out of range: expected "
                          f"less than detector.tone_max_hz ({d.tone_max_hz})")
    if t.chat_id and not re.fullmatch(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}", t.chat_id):
        raise ConfigError(f"telegram.chat_id = {t.chat_id!r} is not allowed: expected a "
                          "numeric chat id (e.g. 123456789 or -1001234567890) or @channelname")
    if t.token and not re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", t.token):
        # Never echo the token itself, not even a wrong one.
        raise ConfigError("telegram.token is not allowed: expected a bot token as @BotFather "
                          "gives it (digits, a colon, then 35 letters/digits)")
    if t.allowed_user_ids and not re.fullmatch(r"\s*\d+(\s*[,\s]\s*\d+)*\s*",
                                                t.allowed_user_ids):
        raise ConfigError(f"telegram.allowed_user_ids = {t.allowed_user_ids!r} is not "
                          "allowed: expected numeric user ids separated by commas, e.g. "
                          '"123456789, 987654321"')
    if len(cfg.notify.name) > 40 or not cfg.notify.name.isprintable():
        raise ConfigError(f"notify.name = {cfg.notify.name!r} is not allowed: expected a "
                          "short name on one line (at most 40 characters), e.g. \"garage\"")
    _check_notify(cfg.notify)
    if cfg.mqtt.enabled:
        from .mqtt.discovery import TopicError, Topics

        try:  # the device id itself is checked when it is made (host name and appliance)
            Topics(cfg.mqtt.base_topic, cfg.mqtt.device_id or "id", cfg.mqtt.discovery_prefix)
        except TopicError as e:
            raise ConfigError(str(e)) from None
    if not re.match(r"^https?://[^/\s]+", t.api_url):
        raise ConfigError(f"telegram.api_url = {t.api_url!r} is not allowed: expected an "
                          "http:// or https:// URL")
    if t.api_url.startswith("http://") and not _is_loopback(t.api_url):
        # Every request carries the token in its path: in clear text it would cross the
        # network. Only a Bot API server on this machine may be spoken to without TLS.
        raise ConfigError(f"telegram.api_url = {t.api_url!r} is not allowed: the bot token "
                          "travels in the URL, so use https:// (http:// only for this "
                          "machine: 127.0.0.0/8, ::1, localhost)")


def _check_notify(n: NotifyConfig) -> None:
    """Quiet hours, the digest's schedule and the heartbeat URL; each parser is imported
    only when its key is set (urllib's, for the heartbeat, costs the daemon memory)."""
    try:
        if n.quiet_hours:
            from .notify.quiet import parse_window

            parse_window(n.quiet_hours)
        if n.digest:
            from .notify.digest import parse_schedule

            parse_schedule(n.digest)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if n.heartbeat_url:
        from .notify.heartbeat import check_url, describe_url

        problem = check_url(n.heartbeat_url)
        if problem:
            raise ConfigError(f"notify.heartbeat_url = {describe_url(n.heartbeat_url)} is "
                              f"not allowed: {problem}")


def _is_loopback(url: str) -> bool:
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError:  # e.g. an unbalanced [ in the host
        return False
    if host == "localhost":  # hostname is lower-cased by urlsplit
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback if address.version == 4 else address == ipaddress.ip_address("::1")


def secrets(cfg: Config) -> tuple[str, ...]:
    """Every secret in ``cfg``, for the logs' redaction: the secret keys' values, and each
    Apprise URL on its own (a log line quotes one URL, not the whole list)."""
    out = []
    for name, cls in sections().items():
        for key, f in _keys(cls).items():
            if f.metadata.get("secret"):
                value = getattr(getattr(cfg, name), key)
                out += [value, *re.split(r"[\s,]+", value)] if value else []
    return tuple(dict.fromkeys(v for v in out if len(v) >= 6))


def mask(value: str) -> str:
    """How a secret is shown: whether it is set, never what it is."""
    return "(set, hidden)" if value else "(not set)"


def to_toml(cfg: Config) -> str:
    """The effective configuration as TOML, secrets masked, each key with its help."""
    lines: list[str] = []
    for name in sections():
        section = getattr(cfg, name)
        lines.append(f"[{name}]")
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if f.metadata.get("secret"):
                lines.append(f"{f.name} = {_toml_value(mask(value))}")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _num(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def describe(cfg: Config) -> str:
    """Which config file is in use, as told to the user."""
    return str(cfg.origin.path) if cfg.origin.path else "none: built-in defaults"


def token_exposure(cfg: Config) -> str | None:
    """A warning when the config file holds the bot token and others can read it."""
    path = cfg.origin.path
    if path is None or not cfg.origin.token_in_file:
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o044:
        return None
    return (f"config file {path} holds the bot token and is readable by its group or others (mode "
            f"{mode:04o}): chmod 600 {path}, or move the token to BEEPNET_TELEGRAM_TOKEN "
            "(for the service: /etc/beepnet/beepnet.env)")


def startup_warnings(cfg: Config, command: str) -> list[str]:
    """What to log once at the start of `command`: files not read, a token others can read."""
    warnings = list(cfg.origin.notes)
    exposed = token_exposure(cfg) if command in ("run", "doctor") else None
    if exposed:
        warnings.append(exposed)
    return warnings


def summary(cfg: Config) -> str:
    """One line of the settings that matter at start, secrets masked."""
    t, n = cfg.telegram, cfg.notify
    return (f"config {describe(cfg)}; device={cfg.audio.device!r} chunk={cfg.audio.chunk_seconds}s "
            f"hop={cfg.audio.hop_seconds}s gate={cfg.audio.gate_dbfs}dBFS "
            f"detector={cfg.detector.kind}"
            + (f" runtime={cfg.detector.runtime}" if cfg.detector.kind == "beepnet" else "")
            + f" storage={cfg.storage.path} "
            f"chunks={cfg.storage.chunk_dir} telegram="
            + (f"chat {t.chat_id} token {mask(t.token)} via {t.api_url}" if t.enabled
               else "off (console notifier)")
            + (f" apprise={mask(n.apprise_urls)}" if n.apprise_urls else "")
            + (f" apprise_file={n.apprise_file}" if n.apprise_file else "")
            + (f" quiet_hours={n.quiet_hours} ({n.quiet_mode})" if n.quiet_hours else "")
            + (f" heartbeat={mask(n.heartbeat_url)}" if n.heartbeat_url else "")
            + (f" mqtt={cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else ""))
