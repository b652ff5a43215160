"""The one guarded path by which etcd-formula restarts a running member.

Every restart (a changed flag, unit, trusted CA or version) goes through ``restart``:
the cluster lock in etcd (one member at a time, cluster-wide, whatever minions apply at
once), a bounded wait for full health, the leader last (handing leadership over first),
the switch to a staged version, the restart itself, and a bounded wait until the member
serves and has applied what the leader committed. A member that does not come back
leaves a marker in etcd: later applies stop and say why.
"""

import contextlib
import json
import os
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(
    etcd_actions,
    etcd_client,
    etcd_journal,
    etcd_keys,
    etcd_leader,
    etcd_lock,
    etcd_node,
    etcd_package,
    etcd_releases,
    etcd_settings,
    etcd_snapshot,
    etcd_tls,
    etcd_topology,
    etcd_upgrade,
) = etcd_fresh.load(
    "etcd_actions",
    "etcd_client",
    "etcd_journal",
    "etcd_keys",
    "etcd_leader",
    "etcd_lock",
    "etcd_node",
    "etcd_package",
    "etcd_releases",
    "etcd_settings",
    "etcd_snapshot",
    "etcd_tls",
    "etcd_topology",
    "etcd_upgrade",
)

from salt.exceptions import CommandExecutionError  # noqa: E402

__virtualname__ = "etcd_rolling"


def __virtual__():
    return __virtualname__


def _others(s, me):
    return [etcd_topology.client_url(s, n) for n in s["members"] if n != me]


def plan():
    """
    Whether this member needs a restart, why, and whether the guarded path would refuse
    it: the running version (its /version) and the flags, unit and trusted CA it started
    with, against what the next apply would write (flags and unit rendered from pillar,
    the CAs from the CA minion's mine), so it says before an apply what ``test=True`` and
    the apply will do. ``refusal`` names what stops the restart (an unsupported version
    step, a failed earlier restart); lock and health are judged at restart time.
    ``--initial-*`` flags never count.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_rolling.plan
    """
    s = __salt__["etcd_cluster.live_settings"]()
    started = etcd_node.read_json(etcd_node.started_path(s))
    running = __salt__["etcd_cluster.local_version"]()
    reasons = etcd_node.restart_reasons(started, _would_run(s), running)
    out = {"reasons": reasons, "running_version": running, "refusal": None}
    if reasons and running:
        try:
            out["refusal"] = _refusal(s, etcd_topology.client(s, __opts__["id"]), running)
        except etcd_client.EtcdError as exc:
            out["refusal"] = f"cannot ask the cluster: {exc}"
    return out


def _would_run(s):
    """What etcd would run with after the next apply (etcd_node.wanted of the rendered files)."""
    env = __salt__["etcd_cluster.env"]()
    cas = None
    if etcd_settings.tls_on(s) and s["tls"]["mode"] == "ca_minion":
        cas = __salt__["etcd_tls.trusted_cas"]() or None  # what etcd_tls.trusted writes
    return etcd_node.wanted(s, env or None, __salt__["etcd_cluster.unit_text"](), cas)


def _refusal(s, client, running):
    """Why the guarded path would refuse this restart before taking the lock, or None."""
    stopped = _stopped_by_marker(client, s["cluster"]["name"])
    if stopped:
        return stopped["comment"]
    if running and running != s["version"]:
        why = upgrade_refusal(s, client)
        return f"refusing the version change: {why}" if why else None
    return None


def version_refusal(version):
    """
    Why a change of this running member to etcd ``version`` would be refused (an
    unsupported step: a downgrade, a skipped minor), or None. Asked before anything is
    downloaded, so that a refused version is never staged. The cluster's versions decide;
    when the cluster cannot be asked, this member's running version alone does.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_rolling.version_refusal 3.4.23
    """
    s = dict(__salt__["etcd_cluster.live_settings"](), version=str(version))
    try:
        return upgrade_refusal(s, etcd_topology.client(s, __opts__["id"]))
    except etcd_client.EtcdError:
        running = __salt__["etcd_cluster.local_version"]()
        return etcd_upgrade.judge([running] if running else [], None, s["version"])


def upgrade_refusal(s, client):
    """None when the version change is allowed, else the reason."""
    versions, cluster_version = [], None
    for m in client.member_list(None)["members"]:
        for url in m["client_urls"][:1]:
            try:
                v = client.version(url)
            except etcd_client.EtcdError:
                continue
            versions.append(v.get("etcdserver"))
            cluster_version = cluster_version or v.get("etcdcluster")
    auth = _auth_enabled(client, cluster_version)
    return etcd_upgrade.judge(versions, cluster_version, s["version"], auth, s.get("extra_flags"))


def _auth_enabled(client, cluster_version):
    """Whether etcd auth is (or may be) on, asked in a way every member can apply.

    AuthStatus is new in 3.5 and goes through raft: sent to a 3.5 member of a cluster
    that still has 3.4 members, it makes every 3.4 member panic ("not implemented"; seen
    in the lab). While the cluster version is below 3.5, ask for the root user instead
    (a request 3.4 knows): auth cannot be on without one, so its presence counts as on.
    """
    if (etcd_releases.parse(cluster_version or "") or (0, 0))[:2] >= (3, 5):
        try:
            return bool(client.auth_status().get("enabled"))
        except etcd_client.EtcdError:
            return False
    try:
        client.user_get("root")
        return True  # a root user exists: auth may be on
    except etcd_client.EtcdError as exc:
        return "not found" not in str(exc)  # "user name is empty" etc.: auth is on


def restart(reasons=None):
    """
    Restart this member through the guarded path (see the module's docstring). Refuses,
    and restarts nothing, when a marker says an earlier restart failed, when the lock
    cannot be had in ``etcd:service:lock_wait`` seconds, when the cluster is not fully
    healthy within ``etcd:service:health_timeout``, or when a version change is not a
    supported upgrade step. Returns {restarted, comment, ...}.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_rolling.restart
    """
    try:
        got = _restart(reasons)
    except etcd_client.EtcdError as exc:  # e.g. cut off from the others: said, not a traceback
        got = {"restarted": False, "comment": f"the guarded restart stopped: etcd did not answer ({exc})"}
    done = got.pop("restarted")
    changes = {"restarted": got.get("reasons") or reasons or True} if done else {}
    return etcd_actions.outcome(__context__, done, got.pop("comment"), changes, restarted=done, **got)


def _restart(reasons):  # noqa: PLR0912, PLR0915 (the guarded path, step by step; each return says why it stopped)
    s = __salt__["etcd_cluster.live_settings"]()
    me = __opts__["id"]
    cluster = s["cluster"]["name"]
    svc = s["service"]
    local = etcd_topology.local_endpoint(s, me)
    client = etcd_topology.client(s, me)
    running = __salt__["etcd_cluster.local_version"]()
    reasons = reasons or etcd_node.restart_reasons(
        etcd_node.read_json(etcd_node.started_path(s)), etcd_node.wanted(s), running
    )
    version_change = running and running != s["version"]
    refusal = _refusal(s, client, running)
    if refusal:
        return {"restarted": False, "comment": refusal}
    ttl = etcd_lock.min_ttl(s["tuning"]["election_timeout"], svc["lock_ttl"])
    deadline = time.monotonic() + svc["lock_wait"]
    # A member cut off from the others gets no lease (no quorum): it says so, and waits
    # for nothing (the fault catalogue's leader partition crashed this state before).
    unreachable = f"no restart: {me} cannot take the cluster lock, no quorum answers it"
    with contextlib.ExitStack() as stack:
        try:
            announced = stack.enter_context(etcd_lock.Pending(client, cluster, me, "; ".join(reasons), ttl))
        except etcd_client.EtcdError as exc:
            return {"restarted": False, "comment": f"{unreachable} ({exc})"}
        while True:
            lock = etcd_lock.Lock(client, cluster, me, ttl, max(1.0, deadline - time.monotonic()))
            try:
                lock.acquire()
            except etcd_lock.LockTimeout as exc:
                return {"restarted": False, "comment": f"no restart: {exc}"}
            except etcd_client.EtcdError as exc:
                return {"restarted": False, "comment": f"{unreachable} ({exc})"}
            try:
                # Read again under the lock: while we waited, others may have restarted and
                # now serve elsewhere (on https, while a cluster moves to TLS).
                s = __salt__["etcd_cluster.live_settings"]()
                client = announced.client = etcd_topology.client(s, me)
                stopped = _stopped_by_marker(client, cluster)  # set while we waited for the lock?
                if stopped:
                    return stopped
                report = __salt__["etcd_health.wait_healthy"](svc["health_timeout"])
                if not report["healthy"]:
                    why = "; ".join(report["problems"])
                    if report["without_minion"]:
                        why = __salt__["etcd_health.without_minion_text"](report["without_minion"]) + "; " + why
                    return {"restarted": False, "comment": "no restart: the cluster is not fully healthy: " + why}
                me_st = etcd_leader.status(client, local)
                am_leader = bool(me_st and me_st["leader"] == me_st["member_id"])
                others_pending = [k for k in etcd_lock.pending(client, cluster) if k != me]
                # For a version change the leader also waits until every other member runs
                # the new version: handing leadership to a 3.5 member while 3.4 followers
                # remain makes them panic on what the new leader proposes (seen with
                # 3.4.23 -> 3.5.1 in the lab: "panic: not implemented").
                behind = _behind(s, client, me) if am_leader and version_change else []
                if am_leader and (others_pending or behind) and time.monotonic() < deadline:
                    lock.release()  # the leader goes last: let the others through first
                    time.sleep(1.0)
                    continue
                if behind:
                    return {
                        "restarted": False,
                        "comment": f"the leader upgrades last: {', '.join(behind)} still run an older version; "
                        "apply etcd on them first",
                    }
                if version_change and s["upgrade"]["snapshot"]:
                    problem = _snapshot_once(s, client, local, running)
                    if problem:
                        return {"restarted": False, "comment": f"no upgrade restart: {problem}"}
                if am_leader:
                    problem = etcd_leader.hand_over(client, client.member_list(local), me_st["member_id"], local)
                    if problem:
                        return {"restarted": False, "comment": f"no restart: {problem}"}
                return _restart_now(s, client, lock, reasons, local, version_change)
            finally:
                lock.release()


def _behind(s, client, me):
    """Other members that do not run the pillar's version (or do not answer)."""
    out = []
    for m in client.member_list(None)["members"]:
        if m["name"] == me or not m["client_urls"]:
            continue
        try:
            version = client.version(m["client_urls"][0]).get("etcdserver")
        except etcd_client.EtcdError:
            version = None
        if version != s["version"]:
            out.append(m["name"] or etcd_client.member_hex(m["id"]))
    return out


def _advertise_peer_urls(s, me, timeout):
    """After a restart that moved this member's peer listener (TLS turned on, another
    advertise mode): record the new peer URLs in the cluster, through the other members,
    so that they dial it there. None when done (or nothing to do), else why not."""
    want = [u for u in etcd_node.read_env(s).get("ETCD_INITIAL_ADVERTISE_PEER_URLS", "").split(",") if u]
    others = etcd_topology.client(s, me, _others(s, me))
    deadline = time.monotonic() + timeout
    while True:
        try:
            listing = others.member_list()
            mine = next((m for m in listing["members"] if m["name"] == me), None)
            if not want or mine is None or mine["peer_urls"] == want:
                return None
            others.member_update(mine["id"], want)
            continue  # check it took
        except etcd_client.EtcdError as exc:
            problem = f"peer URL update to {', '.join(want)} failed: {exc}"
        if time.monotonic() > deadline:
            return problem
        time.sleep(0.5)


def _stopped_by_marker(client, cluster):
    marker = client.get(etcd_keys.restart_failed(cluster))
    if not marker:
        return None
    return {
        "restarted": False,
        "comment": f"an earlier guarded restart failed ({marker}): fix that member, then delete "
        f"{etcd_keys.restart_failed(cluster)} (etcdctl del) and apply again",
    }


def _snapshot_once(s, client, local, running):
    """The first member to restart for a version change takes a verified snapshot (its
    record in etcd tells the others it exists). None when there is one, else why not."""
    record_key = etcd_keys.upgrade_snapshot(s["cluster"]["name"], running, s["version"])
    if client.get(record_key):
        return None
    st = etcd_leader.status(client, local)
    label = f"{s['cluster']['name']}-{running}-to-{s['version']}-{time.strftime('%Y%m%dT%H%M%S')}"
    etcdctl = os.path.join(s["paths"]["bin"], "etcdctl")
    try:
        facts = etcd_snapshot.save(
            etcdctl,
            local,
            etcd_topology.etcdctl_tls(s),
            s["upgrade"]["snapshot_dir"],
            (st or {}).get("db_size", 0),
            label,
            s["upgrade"]["keep"],
        )
    except etcd_snapshot.SnapshotError as exc:
        return f"the snapshot before the upgrade failed: {exc}"
    client.put(record_key, json.dumps(dict(facts, member=__opts__["id"], time=time.time())))
    return None


def _switch_binaries(s, version_change):
    """Under the lock, before the restart: put in place what the member is to run. A
    tarball's staged version is switched to; OS packages are installed at the pinned
    version (held, their own service actions blocked). None when done, else why not
    (nothing restarted then)."""
    src, svc = s["source"], s["service"]
    try:
        if src["type"] == "package":
            have = __salt__["etcd_install.packages"](src["packages"])
            if etcd_package.off_pin(have, src["package_version"]):
                __salt__["etcd_install.package_install"](
                    src["packages"], src["package_version"], svc["name"], refresh=False
                )
        elif version_change or __salt__["etcd_install.active_version"](s["paths"]["bin"]) != s["version"]:
            __salt__["etcd_install.activate"](s["version"], s["paths"]["install"], s["paths"]["bin"])
    except CommandExecutionError as exc:
        return str(exc)
    return None


def _restart_now(s, client, lock, reasons, local, version_change):
    me = __opts__["id"]
    svc = s["service"]
    lock.keepalive(_others(s, me))
    problem = _switch_binaries(s, version_change)
    if problem:
        return {"restarted": False, "comment": f"no restart: {problem}"}
    if version_change:
        staged = os.path.join(s["paths"]["config_dir"], f"etcd.env.{s['version']}")
        if os.path.exists(staged):  # rendered for this version by config.sls
            os.replace(staged, os.path.join(s["paths"]["config_dir"], "etcd.env"))
    started = time.monotonic()
    wanted = etcd_node.wanted(s)
    etcd_node.write_json(etcd_node.started_path(s), wanted)
    crash_loop = etcd_journal.CrashWatch(svc["name"])
    __salt__["service.restart"](svc["name"], no_block=True)
    time.sleep(0.5)  # let systemd stop the old process before asking whether it serves
    problem = _advertise_peer_urls(s, me, svc["restart_timeout"])
    # Where this member serves now (it may have moved to https): ask the settings again.
    local = etcd_topology.local_endpoint(__salt__["etcd_cluster.live_settings"](), me)
    if problem or not etcd_leader.caught_up(client, local, svc["restart_timeout"], give_up=crash_loop):
        others = etcd_topology.client(s, me, _others(s, me))
        record = {"member": me, "reasons": reasons, "time": time.time()}
        if crash_loop.seen:  # the wait ended early: etcd's own reason, not a guess
            record["etcd_error"] = crash_loop.seen
            problem = f"it crash-loops, etcd exits with: {crash_loop.seen}"
        try:
            others.put(etcd_keys.restart_failed(s["cluster"]["name"]), json.dumps(record))
        except etcd_client.EtcdError:
            pass
        within = f"in {time.monotonic() - started:.0f} s" if crash_loop.seen else f"within {svc['restart_timeout']} s"
        return {
            "restarted": False,
            "comment": f"{me} did not serve and catch up {within} after its restart"
            f"{f' ({problem})' if problem else ''}; later applies stop until the marker is removed "
            "(README: Rolling changes)",
        }
    return {
        "restarted": True,
        "comment": f"restarted ({'; '.join(reasons)}) in {time.monotonic() - started:.1f} s",
        "seconds": round(time.monotonic() - started, 2),
        "keepalive_errors": lock.keepalive_errors,
    }
