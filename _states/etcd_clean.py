"""States of ``etcd.clean``: take away only what etcd-formula made.

Each directory the formula creates carries its marker file (``etcd_node.MARKER``,
written by the install, tls and config SLS); ``owned_absent`` deletes a directory only
when the marker is there, so a path that pillar points at something else (an operator's
own ``/etc/etcd``, a distribution package's) is never deleted by a clean.
"""

import os
import shutil

import etcd_fresh

(etcd_names, etcd_node) = etcd_fresh.load("etcd_names", "etcd_node")

__virtualname__ = "etcd_clean"


def __virtual__():
    return __virtualname__


def owned_absent(name, keep=None):
    """
    Delete directory ``name`` when it carries etcd-formula's marker; entries named in
    ``keep`` stay, and with them the directory and its marker.

    .. code-block:: yaml

        etcd-clean-config-etcd_clean-owned_absent:
          etcd_clean.owned_absent:
            - name: /etc/etcd
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    keep = set(keep or [])
    problem = etcd_names.path_problem(name, True)  # the rule pillar paths pass: never / or /etc
    if problem:
        ret.update(result=False, comment=f"not deleting {name!r}: {problem[0]}")
        return ret
    if not os.path.isdir(name):
        ret["comment"] = f"{name} is not there"
        return ret
    if not os.path.isfile(os.path.join(name, etcd_node.MARKER)):
        ret["comment"] = (
            f"kept {name}: it has no {etcd_node.MARKER} marker, so etcd-formula did not make it; "
            "delete it by hand if it is yours to delete"
        )
        return ret
    doomed = sorted(e for e in os.listdir(name) if e not in keep and e != etcd_node.MARKER)
    whole = not (keep & set(os.listdir(name)))
    if __opts__["test"]:
        what = f"would delete {name}" if whole else f"would delete {', '.join(doomed) or 'nothing'} in {name}"
        ret.update(result=None, comment=what, changes={"deleted": name if whole else doomed})
        return ret
    if whole:
        shutil.rmtree(name)
        ret.update(comment=f"deleted {name}", changes={"deleted": name})
        return ret
    for entry in doomed:
        path = os.path.join(name, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    kept = sorted(keep & set(os.listdir(name)))
    ret.update(comment=f"deleted {len(doomed)} entries in {name}, kept {', '.join(kept)}", changes={"deleted": doomed})
    return ret
