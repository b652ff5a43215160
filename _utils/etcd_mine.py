"""The one way the formula writes to the Salt mine (``tests/functional/test_salt_internals.py``
fails when Salt changes what this copies)."""

import socket

# What every member's minion sends at the formula's first state, so that the members'
# health gate can tell a pillar member that is on its way from one with no minion.
ANNOUNCE = "etcd_formula.applying"


def send(opts, fire, name, data):
    """Publish ``data`` to the master's mine under ``name``: what ``mine.send`` does,
    without its fixed half-second pause after handing the data to the minion daemon (it
    costs every first start and every health run half a second; nothing here reads the
    mine back at once). ``fire`` is the caller's ``__salt__["event.fire"]``. Masterless
    minions keep no mine."""
    if opts.get("file_client") == "local":
        return
    if not master_reachable(opts):
        # The minion daemon sends mine data synchronously, retrying for up to
        # return_retry_timer x return_retry_tries (about 30 s), in the loop that also runs
        # its scheduler: with the master down, every health run stalled the schedule
        # (the fault catalogue measured 0-1 checks per member in 60 s). The next run
        # after the master is back sends it.
        return
    load = {"cmd": "_mine", "data": {name: data}, "id": opts["id"], "clear": False}
    fire(load, "_minion_mine")  # the minion daemon forwards it to the master


def master_reachable(opts, timeout=1.0):
    """Whether the master's request port accepts a TCP connection now (a single master;
    with a list of masters the daemon picks, so say yes)."""
    host = opts.get("master_ip") or opts.get("master")
    if not isinstance(host, str) or not host:
        return True
    try:
        socket.create_connection((host, int(opts.get("master_port") or 4506)), timeout).close()
    except (OSError, ValueError):
        return False
    return True
