"""The cluster as this minion configures it: its settings (a pure read of pillar, and the
live view during a move to TLS), the flags and unit it renders, the live member list,
and the cluster IDs recorded for its site (grain and mine).

Health is ``etcd_health``, the lock ``etcd_lock``, how a stopped member starts
``etcd_bootstrap``, the Kubernetes side ``etcd_kubernetes``: see docs/architecture.md.
"""

import concurrent.futures
import copy
import json
import os
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
# Every util is loaded here, at module load: Salt puts extmods/utils on sys.path only
# while it loads a module, so an import made later, inside a function, cannot find a util
# nobody imported yet (the health check's etcd_tls crashed every TLS site that way).
# tests/functional/test_loading.py checks that no function body imports a util.
(
    etcd_client,
    etcd_envfile,
    etcd_flags,
    etcd_migration,
    etcd_mine,
    etcd_node,
    etcd_renamed,
    etcd_settings,
    etcd_topology,
    etcd_validate,
    etcd_validate_node,
) = etcd_fresh.load(
    "etcd_client",
    "etcd_envfile",
    "etcd_flags",
    "etcd_migration",
    "etcd_mine",
    "etcd_node",
    "etcd_renamed",
    "etcd_settings",
    "etcd_topology",
    "etcd_validate",
    "etcd_validate_node",
)

__virtualname__ = "etcd_cluster"

GRAIN = "etcd_cluster_ids"
SETTINGS_FILE = "formula-settings.json"  # written by salt/etcd/config.sls


def __virtual__():
    return __virtualname__


def _pillar_etcd():
    # pillar.get masks every value outside templates (Salt 3008); read plain values.
    return etcd_settings.expose(__pillar__.get("etcd", {}))


SETTINGS_CACHE = "etcd_cluster.settings"  # __context__: (the pillar it was merged from, the settings)


def settings():
    """
    The merged settings of this minion: defaults, OS family, pillar ``etcd:lookup``,
    pillar ``etcd``. A pure read of pillar, merged once per job (``__context__``, until
    the pillar changes); what the live cluster says while it moves to TLS is
    ``live_settings``.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.settings
    """
    raw = _pillar_etcd()
    os_family = __grains__.get("os_family")
    cached = __context__.get(SETTINGS_CACHE)
    if not cached or cached[0] != (raw, os_family):
        # Keyed by the pillar itself, not the job: a minion running jobs in threads keeps
        # __context__ across jobs, and a refreshed pillar must never meet old settings.
        cached = ((copy.deepcopy(raw), os_family), etcd_settings.merge(raw, os_family))
        __context__[SETTINGS_CACHE] = cached
    return copy.deepcopy(cached[1])  # callers may change their copy


def live_settings():
    """
    ``settings``, and while a running plain-HTTP cluster moves to TLS also where each
    member serves now (``serving``: the client URLs follow it) and the stage this member
    restarts into next (``tls_stage``: what ``env`` renders), from the live cluster. A
    cluster formed with TLS costs one file read. Writes nothing (``mark_tls_migration``
    keeps the marker).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.live_settings
    """
    s = settings()
    s.update(_tls_migration(s)[0])
    return s


MIGRATION_MARKER = "tls-migration"  # in the state dir, while this member saw a cluster half on TLS


def mark_tls_migration():
    """
    Keep the ``tls-migration`` marker in the state dir while this member sees its
    cluster half on TLS (so that, once this member serves https, it still asks where the
    others serve), and drop it once every member serves https. ``etcd_cluster.running``
    calls it before any restart decision; returns ``{result, comment, changes}``.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.mark_tls_migration
    """
    s = settings()
    marker = os.path.join(s["paths"]["state"], MIGRATION_MARKER)
    ret = {"result": True, "comment": "no TLS migration in progress", "changes": {}}
    want = _tls_migration(s)[1]
    if want is True and not os.path.exists(marker):
        if not __opts__["test"]:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "a").close()
        ret.update(comment="the cluster is half on TLS", changes={"marker": marker})
    elif want is False and os.path.exists(marker):
        if not __opts__["test"]:
            os.unlink(marker)
        ret.update(comment="every member serves https", changes={"marker": "removed"})
    return ret


def _tls_migration(s):
    """(what live_settings adds, whether the marker should exist: True, False or None
    for no opinion): etcd_migration.live_view with this node's files and client."""
    me = __opts__["id"]
    if not etcd_settings.tls_on(s) or me not in (s.get("members") or {}):
        return {}, None  # TLS off, or not a member: nothing moves here

    def client_for(urls):
        try:
            return etcd_topology.client(s, me, urls)
        except etcd_client.EtcdError:  # no certificates yet (first TLS apply): nobody serves https
            return etcd_client.Client(urls, s["service"]["probe_timeout"])

    started = etcd_node.read_json(etcd_node.started_path(s))
    if not started or not etcd_node.has_data(s["paths"]["data"]):
        return {}, None
    marker = os.path.exists(os.path.join(s["paths"]["state"], MIGRATION_MARKER))
    return etcd_migration.live_view(s, me, started, marker, client_for)


def applied_settings():
    """
    The settings the last ``state.apply etcd`` rendered on this node (None before the
    first). The scheduled health check judges the cluster by these: the minion daemon's
    pillar is only refreshed on request, the node's files are what etcd runs with.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.applied_settings
    """
    path = os.path.join(settings()["paths"]["config_dir"], SETTINGS_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def validate(member=True):
    """
    Check this minion's settings; errors and warnings name the pillar key and the fix.
    ``member=False`` checks them for a consumer of the cluster (the Kubernetes minion):
    the same rules, without those about this minion being a member.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.validate
        salt k8s-master1 etcd_cluster.validate member=False
    """
    s = settings()
    me = __opts__["id"]
    report = etcd_validate.validate(_pillar_etcd(), s, me, etcd_node.has_etcd(s), as_member=member)
    address = etcd_validate_node.member_address(s, me)
    started = etcd_node.read_json(etcd_node.started_path(s)) or {}
    was = str(started.get("flags", {}).get("ETCD_ADVERTISE_CLIENT_URLS", "")).split("://")[0]
    node = etcd_validate_node.errors(
        s,
        me,
        member,
        address_is_local=bool(address) and etcd_node.is_local_address(address),
        node_ips=__grains__.get("ipv4", []) + __grains__.get("ipv6", []),
        runs_https_with_data=was == "https" and etcd_node.has_data(s["paths"]["data"]),
    )
    if node:
        report["valid"] = False
        report["errors"] += node
    return report


def config_version():
    """
    The version ``etcd.env`` is rendered for: while a running member waits for its
    guarded switch to a staged new version, the version its active binary runs (so a
    crash or reboot before the switch restarts the old binary with the old flags); else
    the pillar's. The new version's environment is staged beside it meanwhile
    (``etcd.env.<version>``) and moved into place by the guarded restart.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.config_version
    """
    s = settings()
    active = __salt__["etcd_install.active_version"](s["paths"]["bin"])
    if active and active != s["version"] and etcd_node.unit_active(s["service"]["name"]):
        return active
    return s["version"]


def env(name=None, version=None):
    """
    The ETCD_* environment this member's unit runs with, for ``version`` (default:
    ``config_version``).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.env
        salt etcd1 etcd_cluster.env version=3.5.1
    """
    s = live_settings()
    name = name or __opts__["id"]
    if name not in (s.get("members") or {}) or not etcd_validate.validate(_pillar_etcd(), s, name, True)["valid"]:
        # Rendering must not fail on a bad pillar: the validate state reports it, first.
        return {}
    return etcd_flags.flags(s, name, version or config_version())


def env_lines(version=None):
    """
    ``etcd.env``'s assignments as ``etcd.config`` writes them: ``env`` with each value
    quoted the way systemd's EnvironmentFile= and the shell read it (``_utils/etcd_envfile``).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.env_lines
    """
    return etcd_envfile.lines(env(version=version))


UNIT_TEMPLATE = "salt://etcd/files/etcd.service.jinja"


def unit_text():
    """
    The systemd unit as the next apply would write it: the formula's template rendered
    with this minion's settings, as ``etcd.config`` renders it. None when the template
    cannot be had from the fileserver (a plan then compares the unit file on disk).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.unit_text
    """
    saltenv = __opts__.get("saltenv") or "base"
    source = __salt__["cp.get_file_str"](UNIT_TEMPLATE, saltenv=saltenv)
    if not source:
        return None
    return __salt__["file.apply_template_on_contents"](
        source, template="jinja", context={"etcd": settings()}, defaults=None, saltenv=saltenv
    )


def _client(s=None):
    return etcd_topology.client(s or live_settings(), __opts__["id"])


def members(endpoint=None):
    """
    The live members, as the cluster reports them (first endpoint that answers).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.members
    """
    listing = _client().member_list(endpoint)
    return {
        "cluster_id": etcd_client.member_hex(listing["cluster_id"]),
        "members": [etcd_client.member_view(m) for m in listing["members"]],
    }


def probe():
    """
    Ask every pillar member for the member list, in parallel and bounded by
    ``etcd:service:probe_timeout``; report who answered and what they said.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.probe
    """
    s = live_settings()
    c = _client(s)
    urls = {n: etcd_topology.client_url(s, n) for n in s["members"]}

    def ask(url):
        try:
            return c.member_list(url)
        except etcd_client.EtcdError:
            return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        answers = dict(zip(urls, pool.map(ask, urls.values()), strict=True))
    answered = {n: a for n, a in answers.items() if a}
    return {
        "answered": sorted(answered),
        "cluster_ids": sorted({etcd_client.member_hex(a["cluster_id"]) for a in answered.values()}),
        "members": [etcd_client.member_view(m) for m in next(iter(answered.values()))["members"]] if answered else [],
    }


def recorded_cluster_ids():
    """
    Every cluster ID recorded on this minion, by cluster name (what the mine publishes).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.recorded_cluster_ids
    """
    return dict(__grains__.get(GRAIN) or {})


def recorded_cluster_id():
    """
    The cluster ID recorded on this minion for its site, once the cluster formed.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.recorded_cluster_id
    """
    return recorded_cluster_ids().get(settings()["cluster"].get("name"))


def record_cluster_id(cluster_id):
    """
    Record the cluster ID for this site (a grain, published to the mine for the master).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.record_cluster_id 8e9e05c52164694d
    """
    name = settings()["cluster"]["name"]
    ids = dict(__grains__.get(GRAIN) or {})
    if ids.get(name) != cluster_id:
        ids[name] = cluster_id
        __salt__["grains.setval"](GRAIN, ids, refresh_pillar=False)  # a grain, not pillar input
    _to_mine("etcd_cluster.recorded_cluster_ids", recorded_cluster_ids())
    return cluster_id


def forget_cluster_id():
    """
    Drop this site's recorded cluster ID (grain and mine): only for a cluster torn down on
    purpose (etcd.clean with ``whole_cluster``), so that the name may bootstrap again.
    Returns the ID forgotten, or None.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.forget_cluster_id
    """
    name = settings()["cluster"]["name"]
    ids = dict(__grains__.get(GRAIN) or {})
    gone = ids.pop(name, None)
    if gone is not None:
        __salt__["grains.setval"](GRAIN, ids, refresh_pillar=False)
        _to_mine("etcd_cluster.recorded_cluster_ids", ids)
    return gone


def announce():
    """
    Tell the master's mine that this minion applies the formula for its site (the
    formula's first state does): the other members' health gate waits for a pillar
    member that announced itself, and fails at once for one that has no minion.
    Returns what was sent.

    CLI Example:

    .. code-block:: bash

        salt etcd4 etcd_cluster.announce
    """
    data = {"cluster": settings()["cluster"]["name"], "time": round(time.time(), 3)}
    _to_mine(etcd_mine.ANNOUNCE, data)
    return data


def _to_mine(name, data):
    etcd_mine.send(__opts__, __salt__["event.fire"], name, data)


def data_present():
    """
    Whether this node's data dir holds an etcd member.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.data_present
    """
    return etcd_node.has_data(settings()["paths"]["data"])


def local_version():
    """
    The version the local etcd process serves (``/version``), or None when it is down.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.local_version
    """
    s = live_settings()
    try:
        return _client(s).version(etcd_topology.local_endpoint(s, __opts__["id"]))["etcdserver"]
    except (etcd_client.EtcdError, KeyError):
        return None


# Renamed in the split by concern (issue 17); the old names answer for one release.
RENAMED = {
    "healthy": "etcd_health.healthy",
    "health": "etcd_health.health",
    "last_health": "etcd_health.last_health",
    "health_job": "etcd_health.job",
    "check_membership": "etcd_health.check_membership",
    "check_disk": "etcd_health.check_disk",
    "lock": "etcd_lock.lock",
    "lock_holder": "etcd_lock.holder",
    "unlock": "etcd_lock.unlock",
    "kv_backend_address": "etcd_kubernetes.kv_backend_address",
    "kubernetes_manifests": "etcd_kubernetes.manifests",
    "bootstrap_plan": "etcd_bootstrap.plan",
    "reported_members": "etcd_bootstrap.reported_members",
}


etcd_renamed.aliases(globals(), __virtualname__, RENAMED)
