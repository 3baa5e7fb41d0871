"""Telling the owner: the notifier and its outbox, each channel's delivery (Telegram,
Apprise), the bot's commands, quiet hours, the heartbeat and the digest."""

import sys

# httpx (under python-telegram-bot) imports its command-line client when it can, and it can
# here: rich and pygments are installed for `beepnet monitor`. That costs the daemon's main
# process about 6 MB of the Pi's memory for a tool it never runs. A None in sys.modules makes
# that one import fail, and httpx then defines a `main` that only says it is not installed.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
