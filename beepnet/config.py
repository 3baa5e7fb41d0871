"""The one typed configuration, validated once at start.

Sources, later ones winning:

1. built-in defaults (the dataclasses below),
2. a TOML file (``--config PATH``, or ``$BEEPNET_CONFIG``; ``beepnet config --example``),
3. the environment: ``BEEPNET_TELEGRAM_TOKEN`` and ``BEEPNET_TELEGRAM_CHAT_ID``, and the
   systemd credential ``telegram-token`` (``$CREDENTIALS_DIRECTORY/telegram-token``),
4. ``--set section.key=value`` on the command line (repeatable).

Any bad value or unknown key raises :class:`ConfigError`, whose message is one line naming
the key and what is allowed; the CLI turns it into exit status 78 (EX_CONFIG), which the
systemd unit lists in ``RestartPreventExitStatus`` so that a typo does not restart-loop.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
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
}

DEFAULT_API_URL = "https://api.telegram.org"
EXAMPLE = Path(__file__).with_name("example.toml")


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

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.chat_id)


@dataclass(frozen=True)
class NotifyConfig:
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


@dataclass(frozen=True)
class WatchConfig:
    timeout_minutes: float = _opt(150.0, "say so when a watch stays open this long without "
                                  "a beep", lo=0.1, hi=7 * 24 * 60.0)
    idle_minutes: float = _opt(10.0, "quiet this long, then sound, opens a new watch",
                               lo=0.05, hi=24 * 60.0)


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
    def alert_dir(self) -> Path:
        return self.path / "alerts"

    @property
    def outbox_dir(self) -> Path:
        return self.path / "outbox"


@dataclass(frozen=True)
class RecordConfig:
    dir: str = _opt("data/unlabelled", "where `beepnet record` keeps its chunks")


@dataclass(frozen=True)
class LogConfig:
    level: str = _opt("info", "log level", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    log: LogConfig = field(default_factory=LogConfig)


def sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


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


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """Parse a TOML config file into {section: {key: value}} without validating values."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    for section, table in data.items():
        if not isinstance(table, dict):
            if section in sections():
                raise ConfigError(f"config file {path}: [{section}] must be a table")
            raise _unknown(None, section)
    return data


_SET_RE = re.compile(r"^\s*([a-z_]+)\.([a-z_]+)\s*=(.*)$", re.S)


def parse_set(assignment: str) -> tuple[str, str, str]:
    """Split one ``--set section.key=value`` into its parts."""
    m = _SET_RE.match(assignment)
    if not m:
        raise ConfigError(f"--set {assignment!r} is not of the form section.key=value")
    value = m.group(3).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return m.group(1), m.group(2), value


def load(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (),
         environ: Mapping[str, str] | None = None) -> Config:
    """Build and validate the config from all four sources."""
    environ = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {}
    if path is None and environ.get("BEEPNET_CONFIG"):
        path = environ["BEEPNET_CONFIG"]
    if path is not None:
        for section, table in read_file(Path(path)).items():
            for key, value in table.items():
                _apply(raw, section, key, value, from_text=False)
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            _apply(raw, section, key, environ[var], from_text=True)
    token = _credential(environ, "telegram-token")
    if token:
        _apply(raw, "telegram", "token", token, from_text=True)
    for assignment in overrides:
        section, key, value = parse_set(assignment)
        _apply(raw, section, key, value, from_text=True)
    cfg = Config(**{name: cls(**raw.get(name, {})) for name, cls in sections().items()})
    _cross_check(cfg)
    return cfg


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
    if not re.match(r"^https?://[^/\s]+", t.api_url):
        raise ConfigError(f"telegram.api_url = {t.api_url!r} is not allowed: expected an "
                          "http:// or https:// URL")


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


def summary(cfg: Config) -> str:
    """One line of the settings that matter at start, secrets masked."""
    t = cfg.telegram
    return (f"device={cfg.audio.device!r} chunk={cfg.audio.chunk_seconds}s "
            f"hop={cfg.audio.hop_seconds}s gate={cfg.audio.gate_dbfs}dBFS "
            f"detector={cfg.detector.kind}"
            + (f" runtime={cfg.detector.runtime}" if cfg.detector.kind == "beepnet" else "")
            + f" storage={cfg.storage.path} "
            f"chunks={cfg.storage.chunk_dir} telegram="
            + (f"chat {t.chat_id} token {mask(t.token)} via {t.api_url}" if t.enabled
               else "off (console notifier)"))
