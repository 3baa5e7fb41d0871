"""Cycle awareness: where the washing machine is in its cycle, and whether the laundry is
still inside.

The owner does not want a beep detector; they want to know when the laundry is done and to
be reminded until they fetch it. `machine.CycleMachine` turns what the daemon hears
(machine sound, quiet, beeps, the owner's "Emptied") into cycle events: started, finished,
stopped without a beep, running long, reminders. It reads no clock and starts no process,
so it is tested on made-up timelines. `events` holds what goes in and out.

`ear` decides which sounds are the machine, `history` keeps every cycle (SQLite),
`estimate` says when a running one should end. The daemon wires them together in
`beepnet.daemon.cycleflow`.
"""
