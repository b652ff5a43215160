"""The one way the formula writes to the Salt mine (``tests/functional/test_salt_internals.py``
fails when Salt changes what this copies)."""

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
    load = {"cmd": "_mine", "data": {name: data}, "id": opts["id"], "clear": False}
    fire(load, "_minion_mine")  # the minion daemon forwards it to the master
