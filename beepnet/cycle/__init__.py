"""Cycle awareness: where the washing machine is in its cycle, and whether the laundry is
still inside.

The owner does not want a beep detector; they want to know when the laundry is done and to
be reminded until they fetch it. `machine.CycleMachine` turns what the daemon hears
(machine sound, quiet, beeps, the owner's "Emptied") into cycle events: started, finished,
stopped without a beep, running long, reminders. It reads no clock and starts no process,
so it is tested on made-up timelines. `events` holds what goes in and out.

Not wired into the daemon yet (issue 16): the supervisor will feed it, and the notifier,
the status file and a cycle history will consume its events.
"""
