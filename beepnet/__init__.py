"""beepnet: hears an appliance's end-of-cycle beep and tells your phone."""

__version__ = "0.2.0"
