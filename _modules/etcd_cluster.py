"""Execution functions for an etcd cluster managed by etcd-formula.

Thin wrappers: the settings model lives in ``_utils/etcd_settings.py``, the v3 JSON
gateway client in ``_utils/etcd_client.py``.
"""

import concurrent.futures
import json
import os
import re
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
# Every util is loaded here, at module load: Salt puts extmods/utils on sys.path only
# while it loads a module, so an import made later, inside a function, cannot find a util
# nobody imported yet (the health check's etcd_tls crashed every TLS site that way).
# tests/functional/test_loading.py checks that no function body imports a util.
(
    etcd_client,
    etcd_disk,
    etcd_envfile,
    etcd_flags,
    etcd_health,
    etcd_k8s,
    etcd_lock,
    etcd_migration,
    etcd_node,
    etcd_rotation,
    etcd_settings,
    etcd_tls,
    etcd_topology,
    etcd_validate,
) = etcd_fresh.load(
    "etcd_client",
    "etcd_disk",
    "etcd_envfile",
    "etcd_flags",
    "etcd_health",
    "etcd_k8s",
    "etcd_lock",
    "etcd_migration",
    "etcd_node",
    "etcd_rotation",
    "etcd_settings",
    "etcd_tls",
    "etcd_topology",
    "etcd_validate",
)

__virtualname__ = "etcd_cluster"

GRAIN = "etcd_cluster_ids"
SETTINGS_FILE = "formula-settings.json"  # written by salt/etcd/config.sls
HEALTH_JOB = "etcd-health"  # the scheduler job salt/etcd/health.sls installs


def __virtual__():
    return __virtualname__


def _pillar_etcd():
    # pillar.get masks every value outside templates (Salt 3008); read plain values.
    return etcd_settings.expose(__pillar__.get("etcd", {}))


def settings(runtime=True):
    """
    The merged settings of this minion: defaults, OS family, pillar ``etcd:lookup``,
    pillar ``etcd``. While a running cluster moves to TLS, and unless ``runtime`` is
    false, also where each member serves now (``serving``) and this member's next stage
    (``tls_stage``), from the live cluster.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.settings
    """
    s = etcd_settings.merge(_pillar_etcd(), __grains__.get("os_family"))
    if runtime and etcd_settings.tls_on(s) and __opts__["id"] in (s.get("members") or {}):
        _tls_migration(s)
    return s


MIGRATION_MARKER = "tls-migration"  # in the state dir, while this member saw a cluster half on TLS


def _tls_migration(s):
    """While a running plain-HTTP cluster moves to TLS (etcd_migration), add to the
    settings where each member serves now (``serving``) and the stage this member
    restarts into next (``tls_stage``). A cluster formed with TLS costs one file read."""
    me = __opts__["id"]
    marker = os.path.join(s["paths"]["state"], MIGRATION_MARKER)
    started = etcd_node.read_json(etcd_node.started_path(s))
    if not started or not etcd_node.has_data(s["paths"]["data"]):
        return
    running = etcd_migration.stage_of(started.get("flags"))
    if running == etcd_migration.HTTPS and not os.path.exists(marker):
        return
    s["serving"] = {me: "https" if running == etcd_migration.HTTPS else "http"}
    urls = [etcd_topology.local_endpoint(s, me)]
    for name in s["members"]:
        if name != me:
            urls += etcd_topology.client_urls_any_scheme(s, name)
    try:
        client = etcd_topology.client(s, me, urls)
    except etcd_client.EtcdError:  # no certificates yet (first TLS apply): nobody serves https
        client = etcd_client.Client(urls, s["service"]["probe_timeout"])
    try:
        listing = client.member_list()
        records = client.get_prefix(etcd_rotation.record_prefix(etcd_lock.prefix(s["cluster"]["name"])))
    except etcd_client.EtcdError:
        return  # nobody answers: only this member's own scheme is known
    s["serving"] = dict(etcd_migration.serving(listing), **s["serving"])  # its own, as it runs now
    if running != etcd_migration.HTTPS:
        if not __opts__["test"]:
            open(marker, "a").close()
        s["tls_stage"] = etcd_migration.wanted_stage(
            running, etcd_rotation.parse_records(records), etcd_rotation.member_names(listing)
        )
    elif etcd_migration.finished(listing):
        if not __opts__["test"]:  # a dry run writes and deletes nothing
            os.unlink(marker)
        del s["serving"]


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
    members = s.get("members") if isinstance(s.get("members"), dict) else {}  # a list: refused above
    entry = members.get(me) if isinstance(members.get(me), dict) else {}
    address = entry.get("address")
    if member and address and not etcd_node.is_local_address(address):
        # etcd listens on the member's address: on another node's (or a mistyped) one it
        # would crash-loop, and a running member would be restarted into that.
        report["valid"] = False
        mine = [ip for ip in __grains__.get("ipv4", []) + __grains__.get("ipv6", []) if not _loopback(ip)]
        report["errors"].append(
            {
                "key": f"etcd:members:{me}:address",
                "message": f"{address} is not an address of this node ({me}): etcd could not listen on it",
                "fix": f"set `etcd:members:{me}:address` to this node's IP"
                + (f" (it has {', '.join(mine)})" if mine else ""),
            }
        )
    started = etcd_node.read_json(etcd_node.started_path(s)) or {}
    was = str(started.get("flags", {}).get("ETCD_ADVERTISE_CLIENT_URLS", "")).split("://")[0]
    if was == "https" and not etcd_settings.tls_on(s) and etcd_node.has_data(s["paths"]["data"]):
        report["valid"] = False
        report["errors"].append(
            {
                "key": "etcd:tls:enabled",
                "message": "this member runs with https:// URLs: the formula turns TLS on for a running cluster, "
                "never off (every client and peer would lose its authentication)",
                "fix": "set `etcd:tls:enabled` back to true; to leave TLS, take a snapshot and restore it into a "
                "new cluster (README: TLS)",
            }
        )
    return report


def _loopback(ip):
    return ip.startswith("127.") or ip == "::1" or ip.lower().startswith("fe80:")


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
    s = settings()
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
    return etcd_topology.client(s or settings(), __opts__["id"])


def _member_view(m):
    return {
        "id": etcd_client.member_hex(m["id"]),
        "name": m["name"],
        "peer_urls": m["peer_urls"],
        "client_urls": m["client_urls"],
        "is_learner": m["is_learner"],
        "started": bool(m["client_urls"]),
    }


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
        "members": [_member_view(m) for m in listing["members"]],
    }


def probe():
    """
    Ask every pillar member for the member list, in parallel and bounded by
    ``etcd:service:probe_timeout``; report who answered and what they said.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.probe
    """
    s = settings()
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
        "members": [_member_view(m) for m in next(iter(answered.values()))["members"]] if answered else [],
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


def _to_mine(name, data):
    """Publish `data` to the master's mine under `name`: what mine.send does, without its
    fixed half-second pause after handing the data to the minion daemon (it costs every
    first start and every health run half a second; nothing here reads the mine back at
    once). Masterless minions keep no mine."""
    if __opts__.get("file_client") == "local":
        return
    load = {"cmd": "_mine", "data": {name: data}, "id": __opts__["id"], "clear": False}
    __salt__["event.fire"](load, "_minion_mine")  # the minion daemon forwards it to the master


def _recorded_anywhere(s):
    """Cluster IDs recorded for this site's cluster name, here or by any member (mine)."""
    name = s["cluster"]["name"]
    records = [recorded_cluster_ids()]
    if __opts__.get("file_client") != "local":
        mined = __salt__["mine.get"](",".join(s["members"]), "etcd_cluster.recorded_cluster_ids", tgt_type="list")
        records += [v for v in (mined or {}).values() if isinstance(v, dict)]
    return sorted({r[name] for r in records if r.get(name)})


def _live_view(s):
    """The live cluster as this node can see it. In test mode a node that cannot speak
    to the cluster yet (no client certificate, or one from a CA being rotated out: the
    real apply issues a new one first) plans from the members' last health reports in
    the mine instead, and says so; the real apply always asks the cluster."""
    try:
        live = probe()
    except etcd_client.EtcdError:
        if not __opts__["test"]:
            raise
        live = None  # no client material yet: tls.certificates makes it before the real start
    nobody = {"answered": [], "cluster_ids": [], "members": []}
    if live and live["answered"] or not __opts__["test"] or not etcd_settings.tls_on(s):
        return live or nobody, ""
    if live is not None and not any(__salt__["etcd_tls.plan"](against_mine=True).values()):
        return live, ""  # its certificates are fine: nobody answering is the real answer
    mined = _mined_view(s)
    if not mined:
        return live or nobody, BLIND
    return mined, f" (planned from the members' health reports in the mine, {mined['age']} s old)"


# Test mode on a node that cannot speak to the cluster yet and has no report to plan from.
BLIND = "blind"


def _mined_view(s):
    reported = reported_members()
    if not reported:
        return None
    return {
        "answered": [reported["reporter"]],
        "cluster_ids": [reported["cluster_id"]],
        "members": [_member_view(m) for m in reported["members"]],
        "age": reported["age"],
    }


def reported_members():
    """
    The member list as this site's members last reported it in their scheduled health
    checks (the mine), for a node that cannot ask the cluster yet: a new member before
    its certificates exist, in test mode. Same shape as the live list (``members``, with
    ``serving``: the IDs that answered), plus who reported it and how many seconds ago.
    None when no member has reported. Only pillar members' reports for this site's
    cluster name are read; the real apply always asks the cluster.

    CLI Example:

    .. code-block:: bash

        salt etcd4 etcd_cluster.reported_members
    """
    s = settings(runtime=False)
    if __opts__.get("file_client") == "local":
        return None
    others = [n for n in s["members"] if n != __opts__["id"]]
    got = __salt__["mine.get"](",".join(others), "etcd_health", tgt_type="list") or {}
    reports = [
        (name, r)
        for name, r in got.items()
        if name in others
        and isinstance(r, dict)
        and r.get("cluster") == s["cluster"]["name"]
        and isinstance(r.get("members"), list)
        and r["members"]
        and isinstance(r.get("time"), (int, float))
    ]
    if not reports:
        return None
    name, r = max(reports, key=lambda item: item[1]["time"])
    # A member's report is its word: the cluster ID reaches a comment only as hex.
    cluster_id = str(r.get("cluster_id"))
    cluster_id = cluster_id if re.fullmatch(r"[0-9a-f]{1,16}", cluster_id) else "unknown"
    return dict(etcd_health.listing_of(r), reporter=name, cluster_id=cluster_id, age=int(time.time() - r["time"]))


def _member_place(s, me, live):
    """Where a node without data stands in the live cluster (what bootstrap_plan decides)."""
    mine = etcd_topology.peer_url(s, me)
    listed = [m for m in live["members"] if m["name"] == me or mine in m["peer_urls"]]
    if not listed:
        return {
            "action": "add",
            "reason": f"cluster {', '.join(live['cluster_ids'])} is running without {me}: it is added as a "
            "learner, started, and promoted once caught up",
        }
    if listed[0]["is_learner"]:
        return {"action": "add", "reason": f"{me} was added as a learner and never started: completing the join"}
    if listed[0]["started"]:
        return {
            "action": "refuse",
            "reason": f"{me} is a started member of cluster {', '.join(live['cluster_ids'])} but "
            f"{s['paths']['data']} is empty: its data is lost. Replace the member (README: Replace a "
            "failed member); never re-bootstrap it",
        }
    return {"action": "join", "reason": f"{me} is listed in the live cluster and has not started yet"}


def bootstrap_plan():
    """
    How this member's etcd may start when it is not running: ``start`` (it has data),
    ``new`` (bootstrap a new cluster), ``join`` (listed in the live cluster, never
    started), ``add`` (not listed: added as a learner) or ``refuse`` (with the reason
    and the fix). In test mode a node without its certificates yet plans from the
    members' health reports in the mine, or says ``unknown`` when there are none.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.bootstrap_plan
    """
    s = settings()
    me = __opts__["id"]
    if etcd_node.has_data(s["paths"]["data"]):
        return {"action": "start", "reason": f"{s['paths']['data']} holds this member's data"}
    live, source = _live_view(s)
    if live["answered"]:
        plan = _member_place(s, me, live)
        plan["reason"] += source
        return plan
    if source == BLIND:
        return {
            "action": "unknown",
            "reason": f"{me} cannot ask the cluster before its certificates exist (the apply issues them first) "
            "and no member has published a health report to plan from (the etcd-health schedule does, every "
            "interval): the apply will join it if a cluster runs, or bootstrap one if none does and "
            "etcd:cluster:bootstrap allows it",
        }
    recorded = _recorded_anywhere(s)
    if recorded:
        return {
            "action": "refuse",
            "reason": f"no member answers, but cluster {', '.join(recorded)} was formed for site "
            f"{s['cluster']['name']}: refusing to bootstrap a second cluster. Bring its members back",
        }
    if not s["cluster"].get("bootstrap"):
        return {
            "action": "refuse",
            "reason": "no member answers and `etcd:cluster:bootstrap` is false: set it to true for the "
            "first apply of a new cluster",
        }
    return {"action": "new", "reason": "no member answers, no data, no recorded cluster: bootstrap allowed"}


def healthy():
    """
    Whether the cluster is healthy: every pillar member listed and started, one cluster
    ID, a leader, no alarms, no learners, and this member answering.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.healthy
    """
    s = settings()
    me = __opts__["id"]
    c = _client(s)
    problems = []
    local = etcd_topology.local_endpoint(s, me) if me in s["members"] else None
    if local and not c.health(local):
        problems.append(f"{me} does not serve on {local}")
    try:
        listing = c.member_list(local)
    except etcd_client.EtcdError as exc:
        return {"healthy": False, "problems": problems + [f"member list failed: {exc}"]}
    by_name = {m["name"]: m for m in listing["members"]}
    for name in s["members"]:
        if name not in by_name:
            problems.append(f"{name} is not a started member")
        elif not by_name[name]["client_urls"]:
            problems.append(f"{name} never started")
    problems += [
        f"{m['name'] or etcd_client.member_hex(m['id'])} is a learner" for m in listing["members"] if m["is_learner"]
    ]
    cluster_ids, leaders = set(), set()
    for m in listing["members"]:
        for url in m["client_urls"][:1]:
            try:
                st = c.status(url)
            except etcd_client.EtcdError:
                problems.append(f"{m['name']} does not answer on {url}")
                continue
            cluster_ids.add(st["cluster_id"])
            leaders.add(st["leader"])
    if len(cluster_ids) > 1:
        problems.append(f"members report {len(cluster_ids)} cluster IDs")
    if not leaders or 0 in leaders or len(leaders) > 1:
        problems.append("no agreed leader")
    try:
        alarms = c.alarms(local)
    except etcd_client.EtcdError:
        alarms = []
    problems += [f"alarm {a['alarm']} on member {etcd_client.member_hex(a['member_id'])}" for a in alarms]
    return {
        "healthy": not problems,
        "problems": problems,
        "cluster_id": etcd_client.member_hex(listing["cluster_id"]),
        "members": sorted(by_name),
    }


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
    s = settings()
    try:
        return _client(s).version(etcd_topology.local_endpoint(s, __opts__["id"]))["etcdserver"]
    except (etcd_client.EtcdError, KeyError):
        return None


def check_membership():
    """
    The live member list against pillar: findings (missing, extra, never started,
    learner, wrong peer or client URLs, name mismatch) and a verdict.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.check_membership
    """
    s = settings()
    listing = _client(s).member_list(None)
    findings = etcd_health.membership_findings(s, listing)
    return {
        "verdict": "ok" if not findings else "mismatch",
        "cluster_id": etcd_client.member_hex(listing["cluster_id"]),
        "findings": findings,
    }


def _health_file(s):
    return os.path.join(s["paths"]["state"], "health.json")


def health(event=False):
    """
    One health report for the local member and the cluster: every member's health,
    the leader, raft term/index and lag, DB size against the quota, alarms, versions,
    membership findings against pillar and the local WAL fsync latency, with a verdict
    (ok / degraded / critical) and reasons. Bounded by ``etcd:health:timeout`` per
    request, all requests in parallel; it reports its own duration.

    event
        Also send the report to the master as ``etcd/<cluster>/health/<verdict>``,
        keep it as this minion's latest (``etcd_cluster.last_health``) and publish
        that to the mine for ``salt-run etcd.report``. The scheduled job does this.
        A check that fails with an exception then still reports: verdict ``error``,
        the exception in ``error`` (the scheduler keeps no return of its own).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.health
        salt 'etcd*' etcd_cluster.health event=True
    """
    if not event:
        return _health(applied_settings() or settings())
    s = None
    try:
        s = applied_settings() or settings()
        report = _health(s)
    except Exception as exc:  # the job's only witness: a failure must reach the master
        report = etcd_health.error_report(exc, s or _pillar_etcd(), __opts__["id"])
    _publish(s, report)
    return report


def _health(s):
    me = __opts__["id"]
    client = etcd_topology.client(s, me, timeout=s["health"]["timeout"])
    certs = _certificate_days(s)
    report = etcd_health.assess(etcd_health.gather(client, s, me), s, certs)
    if etcd_health.electing(report):
        # Do not page for an election: look again, once a second, for up to two election
        # timeouts (etcd randomises each follower's timeout within that), then judge.
        first, started = report["verdict"], time.monotonic()
        deadline = started + 2 * s["tuning"]["election_timeout"] / 1000 + 1
        while etcd_health.electing(report) and time.monotonic() < deadline:
            time.sleep(1)
            report = etcd_health.assess(etcd_health.gather(client, s, me), s, certs)
        report["rechecked"] = {"first_verdict": first, "after_s": round(time.monotonic() - started, 1)}
    report["minion"] = me
    return report


def _certificate_days(s):
    if not etcd_settings.tls_on(s) or s["tls"]["mode"] not in etcd_settings.TLS_MODES:
        return {}
    out = {}
    for what in etcd_tls.CERTS:
        cert = etcd_tls.load_cert(etcd_settings.tls_path(s, what))
        out[etcd_settings.tls_path(s, what)] = {"days_left": etcd_tls.facts(cert)["days_left"] if cert else -1}
    return out


def _publish(s, report):
    path = _health_file(s or etcd_settings.DEFAULTS)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    os.replace(tmp, path)
    __salt__["event.send"](f"etcd/{report['cluster']}/health/{report['verdict']}", report)
    _to_mine("etcd_health", report)


def last_health():
    """
    The latest report the scheduled health check made on this minion (None before the first).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.last_health
    """
    return _last_report(applied_settings() or settings())


def _last_report(s):
    try:
        with open(_health_file(s), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def health_job():
    """
    The scheduled health check on this minion, as ``salt-run etcd.report`` explains an
    empty mine: whether the ``etcd-health`` job is installed and enabled, its interval,
    and the time, verdict and error of the latest check.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.health_job
    """
    job = (__salt__["schedule.list"](return_yaml=False) or {}).get(HEALTH_JOB)
    s = applied_settings() or settings()
    last = _last_report(s) or {}
    return {
        "cluster": s["cluster"]["name"],
        "scheduled": isinstance(job, dict),
        "enabled": bool(job.get("enabled", True)) if isinstance(job, dict) else None,
        "seconds": job.get("seconds") if isinstance(job, dict) else None,
        "last": {k: last.get(k) for k in ("time", "verdict", "error")} if last else None,
    }


def kv_backend_address():
    """
    The storage operator's ``kvBackend.address`` for this site: every member's client
    URL, comma-separated (https with TLS).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.kv_backend_address
    """
    return etcd_k8s.kv_backend_address(settings())


def check_disk(path=None, seconds=10):
    """
    fdatasync latency where ``path`` (default: the data dir, or its nearest existing
    parent) lives, as etcd's hardware guide measures it: sequential 2300-byte writes with
    an fdatasync after each, up to 22 MiB or ``seconds``. Reports p50/p99/max in ms, IOPS,
    samples and whether the full 22 MiB was written; leaves no file behind.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_cluster.check_disk
        salt etcd1 etcd_cluster.check_disk /var/lib/etcd seconds=30
    """
    return etcd_disk.measure(path or settings()["paths"]["data"], float(seconds))


def kubernetes_manifests(with_secret=False):
    """
    The Kubernetes objects for this site (Service without selector, EndpointSlice, and
    the legacy Endpoints when ``kubernetes:legacy_endpoints``). The Secret with the
    client bundle is only ever written to a file by ``etcd_kubernetes.manifests``; here
    ``with_secret`` shows its name and keys, never its data.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.kubernetes_manifests
    """
    docs = etcd_k8s.manifests(settings())
    if with_secret and etcd_settings.tls_on(settings()):
        k = settings()["kubernetes"]
        docs.append({"kind": "Secret", "name": k["secret"], "keys": sorted(etcd_k8s.SECRET_KEYS.values())})
    return docs


def lock(purpose="maintenance", ttl=3600, wait=0):
    """
    Take the cluster lock (held in etcd on a lease, so it expires ``ttl`` seconds after
    it was taken if nobody releases it), for work that must not overlap a guarded
    restart or a membership change: defragmentation, OS maintenance. Those wait for it
    (``etcd:service:lock_wait``). Waits ``wait`` seconds for a holder to let go.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.lock purpose='kernel update etcd1' ttl=1800
    """
    s = settings()
    held = etcd_lock.Lock(_client(s), s["cluster"]["name"], __opts__["id"], int(ttl), float(wait), purpose=purpose)
    try:
        held.acquire()
    except etcd_lock.LockTimeout as exc:
        return {"locked": False, "comment": str(exc)}
    return {"locked": True, "holder": __opts__["id"], "purpose": purpose, "lease": f"{held.lease:x}", "ttl": int(ttl)}


def lock_holder():
    """
    Who holds the cluster lock, for what, since when, and for how much longer (None when free).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.lock_holder
    """
    s = settings()
    return etcd_lock.holder(_client(s), s["cluster"]["name"])


def unlock(force=False):
    """
    Release the cluster lock this minion holds; ``force=True`` releases anyone's (a
    holder that is gone for good; its lease would expire anyway).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_cluster.unlock
    """
    s = settings()
    client = _client(s)
    held = etcd_lock.holder(client, s["cluster"]["name"])
    if held is None:
        return {"unlocked": False, "comment": "the cluster lock is free"}
    if held.get("holder") != __opts__["id"] and not force:
        return {"unlocked": False, "comment": f"held by {held.get('holder')} ({held.get('purpose')}): force=True"}
    client.post("/v3/lease/revoke", {"ID": held["lease"]})
    return {"unlocked": True, "comment": f"released the lock {held.get('holder')} held ({held.get('purpose')})"}
