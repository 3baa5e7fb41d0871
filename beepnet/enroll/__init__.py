"""`beepnet enroll`: teach beepnet one machine's beep in about a minute, without torch.

The owner presses a button on the machine a few times (or gives recordings of it), then
leaves the room as it usually sounds; beepnet finds the beeps (`find`), makes clips from
them and the room (`clips`), refits the beep row of the model in use's head on its body
features (`head`), compares the new model with the model in use on held-out clips of the
owner's own recordings (`beepnet.model.compare`), and points the config file at it unless
it is worse (`configfile`). `capture` is the guided recording, `command` the CLI flow.
"""
