"""The lab's site pillar: the example site with the lab's addresses and mirror.

It lives in the run's own pillar environment (`lab`), as plain YAML, so a test or a user
can change it (`./lab pillar set etcd:members:etcd4 '{address: 10.213.1.14}'`) and
refresh pillar: no template, no second top.sls in base.
"""

import yaml

from labkit import mirror
from labkit.errors import LabError
from labkit.preflight import RELEASES, REPO

EXAMPLE_SITE = REPO / "pillar" / "sites" / "example.sls"
LAB_VERSION = "3.5.1"


def site_path(state):
    return state.dir / "pillar" / "lab_site.sls"


def release_checksums():
    sums = {}
    for line in (RELEASES / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        version = name.removeprefix("etcd-v").removesuffix("-linux-amd64.tar.gz")
        sums[version] = digest
    return sums


def lab_site(state, members=None):
    """The example site's settings, with the lab's members, mirror and checksums."""
    site = yaml.safe_load(EXAMPLE_SITE.read_text()) if EXAMPLE_SITE.exists() else {}
    etcd = site.setdefault("etcd", {})
    names = [n for n in state["nodes"] if n.startswith("etcd")]
    if members is None:
        members = names[:3] if len(names) >= 3 else names
    etcd["members"] = {n: {"address": state["nodes"][n]["ip"]} for n in members}
    etcd["version"] = LAB_VERSION
    etcd.setdefault("source", {})["url"] = mirror.url(state) + "/etcd-v{version}-linux-amd64.tar.gz"
    etcd["source"]["checksums"] = release_checksums()
    return site


def write(state, site):
    path = site_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Members and the CA minion (TLS) share the site.
    top = {"lab": {"etcd* or ca1": [{"match": "compound"}, "lab_site"]}}
    (path.parent / "top.sls").write_text("# The lab run's own pillar environment.\n" + yaml.safe_dump(top))
    path.write_text(f"# Lab site of run {state['id']} (./lab pillar ...).\n" + yaml.safe_dump(site, sort_keys=False))


SECOND_SITE = "lab_site_second"


def write_second(state, minions, site):
    """Give `minions` a site of their own instead of the lab site: two clusters, two
    pillars (a report across clusters). The lab site stays as it is; the next `write`
    drops the second site again."""
    path = site_path(state)
    names = ",".join(minions)
    top = {
        "lab": {
            f"( etcd* or ca1 ) and not L@{names}": [{"match": "compound"}, "lab_site"],
            f"L@{names}": [{"match": "compound"}, SECOND_SITE],
        }
    }
    (path.parent / f"{SECOND_SITE}.sls").write_text(yaml.safe_dump(site, sort_keys=False))
    (path.parent / "top.sls").write_text("# The lab run's own pillar environment.\n" + yaml.safe_dump(top))


def read(state):
    return yaml.safe_load(site_path(state).read_text()) or {}


def set_key(state, key, value):
    """Set a colon-separated key of the lab site to a YAML value (None deletes it)."""
    site = read(state)
    parts = key.split(":")
    node = site
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LabError(f"pillar key {key!r}: {part!r} is not a mapping")
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    write(state, site)
    return site
