"""beepnet: hears an appliance's end-of-cycle beep and tells your phone."""

__version__ = "0.1.0"
