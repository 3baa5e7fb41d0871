"""Home Assistant over MQTT: one listener is one Home Assistant device, found by MQTT
discovery, whose entities show the machine's cycle and take the owner's commands.

``discovery`` builds the topics and Home Assistant's discovery payloads (pure, no network);
``link`` keeps the connection to the broker (paho-mqtt), publishes what changed, re-announces
when the broker or Home Assistant comes back, and passes the commands on.

Topics, for base_topic "beepnet", device_id "garagepi_washer" and the discovery prefix
"homeassistant" (R: retained)::

    beepnet/garagepi_washer/status                 R  "online" / "offline" (the last will)
    beepnet/garagepi_washer/cycle                  R  idle, running, stopped_without_beep,
                                                      not_emptied
    beepnet/garagepi_washer/running                R  "ON" / "OFF"
    beepnet/garagepi_washer/last_cycle/duration    R  minutes, one decimal
    beepnet/garagepi_washer/last_cycle/finished    R  ISO 8601 with its time zone
    beepnet/garagepi_washer/mute                   R  "ON" / "OFF"
    beepnet/garagepi_washer/beep                      {"event_type": "beep", "score": ...,
                                                       "clip_at": ..., "clip": ...}
    beepnet/garagepi_washer/level                     dBFS, one decimal, at most every
                                                      mqtt.level_seconds
    beepnet/garagepi_washer/emptied/press             command: "PRESS"
    beepnet/garagepi_washer/mute/set                  command: "ON" / "OFF"
    beepnet/garagepi_washer/check/<random>            `beepnet doctor`'s round trip
    beepnet/garagepi_washer/remove/<random>           `beepnet mqtt --remove`'s marker

    homeassistant/status                              Home Assistant's birth: "online"
                                                      makes every listener re-announce
    homeassistant/<component>/garagepi_washer/<object_id>/config    R  discovery, for
        event/beep, sensor/cycle, binary_sensor/running, sensor/level,
        sensor/last_duration, sensor/last_finished, button/emptied, switch/mute

Each listener on a broker needs its own device_id (the default, host name and appliance,
usually is): its client id, topics and unique ids all derive from it.
"""
