"""Topics and Home Assistant MQTT discovery payloads: pure, no network.

One listener is one Home Assistant device. Each of its entities gets its own discovery
topic, ``<prefix>/<component>/<device_id>/<object_id>/config`` (Home Assistant's
"single component" discovery, which every Home Assistant since 2023.8, when the event
entity came, reads), carrying the same device block, so that they group under one device.
Full key names throughout (Home Assistant also accepts abbreviations; full names are
readable in an MQTT explorer, and the payloads are small enough).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..cycle.events import State

ONLINE = "online"
OFFLINE = "offline"
ON, OFF = "ON", "OFF"
PRESS = "PRESS"
BEEP_EVENT = "beep"
CYCLE_STATES = tuple(s.value for s in State)
"""The cycle sensor's options (an enum sensor's state must be one of them)."""

_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
"""Home Assistant's rule for a discovery topic's node and object ids."""


class TopicError(ValueError):
    """A base topic, prefix or device id that cannot be used; one line for the user."""


def slug(text: str) -> str:
    """Lowercase ``[a-z0-9_]``: other characters become one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def default_device_id(hostname: str, appliance: str) -> str:
    """The listener's id when mqtt.device_id is empty: its host name (first label) and the
    appliance, e.g. ``garagepi_washer``; unique as long as one host hears one appliance."""
    host = slug(hostname.split(".")[0]) or "beepnet"
    thing = slug(appliance)
    return f"{host}_{thing}" if thing else host


def _check_path(key: str, value: str) -> None:
    # A wildcard or an empty level would subscribe to, or publish under, other devices' topics.
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise TopicError(f"{key} = {value!r} is not allowed: expected topic levels "
                         "separated by '/', none of them empty")
    if any(c in value for c in "+#\0"):
        raise TopicError(f"{key} = {value!r} is not allowed: no '+', '#' or NUL in it")


@dataclass(frozen=True)
class Topics:
    """Every topic of one listener."""

    base_topic: str
    device_id: str
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        _check_path("mqtt.base_topic", self.base_topic)
        _check_path("mqtt.discovery_prefix", self.discovery_prefix)
        if not _ID_RE.fullmatch(self.device_id):
            raise TopicError(f"mqtt.device_id = {self.device_id!r} is not allowed: expected "
                             "letters, digits, '_' and '-' only")

    @property
    def root(self) -> str:
        return f"{self.base_topic}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.root}/status"

    @property
    def cycle(self) -> str:
        return f"{self.root}/cycle"

    @property
    def running(self) -> str:
        return f"{self.root}/running"

    @property
    def last_duration(self) -> str:
        return f"{self.root}/last_cycle/duration"

    @property
    def last_finished(self) -> str:
        return f"{self.root}/last_cycle/finished"

    @property
    def mute(self) -> str:
        return f"{self.root}/mute"

    @property
    def beep(self) -> str:
        return f"{self.root}/beep"

    @property
    def level(self) -> str:
        return f"{self.root}/level"

    @property
    def emptied_command(self) -> str:
        return f"{self.root}/emptied/press"

    @property
    def mute_command(self) -> str:
        return f"{self.root}/mute/set"

    @property
    def check(self) -> str:
        """Where `beepnet doctor`'s test messages go (one random level below)."""
        return f"{self.root}/check"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and last will topic."""
        return f"{self.discovery_prefix}/status"

    @property
    def commands(self) -> tuple[str, ...]:
        return (self.emptied_command, self.mute_command)

    @property
    def retained_states(self) -> tuple[str, ...]:
        """The state topics published retained (availability apart)."""
        return (self.cycle, self.running, self.last_duration, self.last_finished, self.mute)

    def config(self, component: str, object_id: str) -> str:
        """The discovery config topic of one entity."""
        return f"{self.discovery_prefix}/{component}/{self.device_id}/{object_id}/config"


ENTITIES: tuple[tuple[str, str], ...] = (
    ("event", "beep"), ("sensor", "cycle"), ("binary_sensor", "running"),
    ("sensor", "level"), ("sensor", "last_duration"), ("sensor", "last_finished"),
    ("button", "emptied"), ("switch", "mute"))
"""(component, object_id) of each entity."""


def config_topics(topics: Topics) -> list[str]:
    """Every discovery config topic of the device."""
    return [topics.config(component, object_id) for component, object_id in ENTITIES]


def device_name(appliance: str, name: str = "") -> str:
    """"Washer (beepnet)", or with the listener's name "Garage washer (beepnet)"."""
    appliance = appliance.strip() or "appliance"
    name = name.strip()
    if name and appliance.lower() not in name.lower():
        text = f"{name} {appliance.lower()}"
    else:
        text = name or appliance
    return f"{text[:1].upper()}{text[1:]} (beepnet)"


def discovery_messages(topics: Topics, *, device_id: str, appliance: str, name: str,
                       version: str, support_url: str = "") -> dict[str, dict]:
    """Config topic -> discovery payload, for each entity of the device."""
    device = {"identifiers": [f"beepnet_{device_id}"], "name": device_name(appliance, name),
              "manufacturer": "beepnet", "model": "BeepNet listener", "sw_version": version}
    origin = {"name": "beepnet", "sw_version": version}
    if support_url:
        origin["support_url"] = support_url

    def entity(component: str, object_id: str, label: str, **options) -> tuple[str, dict]:
        payload = {
            "name": label,
            "unique_id": f"{device_id}_{object_id}",
            # Home Assistant 2025.10 and later: the entity id to create (older ones
            # ignore it and derive one from the device and entity names).
            "default_entity_id": f"{component}.{device_id}_{object_id}",
            "availability_topic": topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
            "origin": origin,
            **options}
        return topics.config(component, object_id), payload

    return dict([
        # No device_class: Home Assistant's event classes (doorbell, button, motion) are
        # not an appliance's signal. The JSON's other keys become the event's attributes.
        entity("event", "beep", "Beep", state_topic=topics.beep, event_types=[BEEP_EVENT],
               icon="mdi:bell-ring"),
        entity("sensor", "cycle", "Cycle", state_topic=topics.cycle, device_class="enum",
               options=list(CYCLE_STATES), icon="mdi:washing-machine"),
        entity("binary_sensor", "running", "Running", state_topic=topics.running,
               device_class="running", payload_on=ON, payload_off=OFF),
        # dBFS is relative to the microphone's full scale: no device class fits
        # (signal_strength is dBm, sound_pressure dB SPL).
        entity("sensor", "level", "Sound level", state_topic=topics.level,
               unit_of_measurement="dBFS", state_class="measurement",
               suggested_display_precision=1, entity_category="diagnostic",
               icon="mdi:microphone"),
        entity("sensor", "last_duration", "Last cycle duration",
               state_topic=topics.last_duration, device_class="duration",
               unit_of_measurement="min", state_class="measurement"),
        entity("sensor", "last_finished", "Last cycle finished",
               state_topic=topics.last_finished, device_class="timestamp"),
        entity("button", "emptied", "Emptied",
               command_topic=topics.emptied_command, payload_press=PRESS,
               icon="mdi:basket"),
        entity("switch", "mute", "Mute", state_topic=topics.mute,
               command_topic=topics.mute_command, payload_on=ON, payload_off=OFF,
               state_on=ON, state_off=OFF, icon="mdi:bell-off"),
    ])
