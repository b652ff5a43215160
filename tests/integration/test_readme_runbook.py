"""The README's runbook, command for command, on the example site (TLS): the first TLS apply,
membership, rolling changes, CA rotation and removing etcd.

Each command is read from the README's own code blocks (so the manual and this test
cannot drift apart) and run against the lab's master exactly as written, as `./lab salt`
and `./lab salt-run` run it; only the lab's node names are the README's own. Each step
asserts what the README says the operator will see.
"""

import json
import re
import shlex
import time

import pytest
from results import MEMBERS, host_client_bundle, ok, set_site, tls_site, wipe

from labkit import lab as labcli
from labkit.preflight import REPO
from labkit.traffic import Traffic, assert_no_loss, urls

README = (REPO / "README.md").read_text()
CA = "ca1"
FIVE = MEMBERS + ["etcd4", "etcd5"]
RUNNING = "etcd-service-running-etcd_cluster-running"


def blocks(heading):
    """The code blocks of the README section `### heading`, each as its command lines
    (output lines and comments dropped, `\\` continuations joined)."""
    section = README.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    out = []
    for block in section.split("```")[1::2]:
        lines, pending = [], ""
        for raw in block.splitlines():
            line = pending + raw.strip() if pending else raw.rstrip()
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            if line.startswith(("salt ", "salt-run ")):
                lines.append(re.split(r"\s+#\s", line, maxsplit=1)[0].strip())
        if lines:
            out.append(lines)
    return out


def command(blocks_, words):
    """The one README command containing `words`."""
    found = [c for b in blocks_ for c in b if words in c]
    assert len(found) == 1, f"the README should hold one command with {words!r}: {found}"
    return found[0]


def run(lab, line, timeout=600):
    """A README command as `./lab salt ...` / `./lab salt-run ...` runs it: (rc, stdout)."""
    argv = shlex.split(line)
    proc = labcli.salt(lab.state, *argv[1:], timeout=timeout, tool=argv[0])
    return proc.returncode, proc.stdout + proc.stderr


def run_json(lab, line, timeout=600):
    argv = shlex.split(line)
    proc = labcli.salt(lab.state, *argv[1:], "--out=json", "--static", timeout=timeout, tool=argv[0])
    return json.loads(proc.stdout)


def member_ids(lab):
    return {m["name"]: m["id"] for m in lab.salt("etcd1", "etcd_cluster.members")["etcd1"]["members"]}


def members(lab):
    return sorted(member_ids(lab))


def site_of(lab, names):
    return tls_site(lab, "runbook", names)


def _mined(lab):
    got = lab.salt("etcd4", "mine.get", "etcd1", "etcd_health")["etcd4"] or {}
    return (got.get("etcd1") or {}).get("cluster") == "runbook"


@pytest.fixture(scope="module")
def runbook(lab, tmp_path_factory):
    assert len(lab.etcd_nodes) >= 5, "the runbook needs LAB_NODES>=5"
    wipe(lab, FIVE)
    for name in ("etcd4", "etcd5"):  # new nodes: no certificates, no formula modules yet
        lab.exec(name, "bash", "-c", "rm -rf /etc/etcd/pki /var/lib/etcd.removed-* /var/lib/etcd-formula", check=True)
    set_site(lab, site_of(lab, MEMBERS))
    # The README's first TLS apply and its first apply, as written; `etcd*` is the site's
    # members, here etcd1-3 (etcd4 and etcd5 come later, as new nodes).
    setup = next(b for b in blocks("TLS") if "saltutil.sync_all" in b[0])
    first = blocks("First apply: safe bootstrap")[0]
    assert len(setup) == 3 and first == ["salt -L etcd1,etcd2,etcd3 state.apply etcd"], (setup, first)
    for line in [setup[0], setup[1], *first, setup[2]]:
        rc, out = run(lab, line.replace("etcd*", "etcd[1-3]"))
        assert rc == 0, (line, out)
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    # A site that has run for one health interval: the members' reports are in the mine
    # (a new node's dry run plans from them). Run now rather than waiting up to 60 s.
    lab.salt("etcd1", "schedule.run_job", "etcd-health")
    lab.wait(lambda: _mined(lab), 30, 1, "etcd1's health report in the mine")
    yield lab
    wipe(lab, FIVE)


def test_scale_out_and_in_as_the_runbook_says(runbook):
    membership = blocks("Membership: scale out, scale in, replace a failed member")
    scale_out = membership[0]
    assert len(scale_out) == 3 and "test=True" in scale_out[1], scale_out
    set_site(runbook, site_of(runbook, FIVE))  # "Add the new nodes under etcd:members"
    with Traffic(urls(runbook, MEMBERS, "https"), "runbook", tls=runbook.writer_tls) as traffic:
        rc, out = run(runbook, scale_out[0])
        assert rc == 0, out
        before = {n: runbook.digest(n) for n in ("etcd4", "etcd5")}
        planned = run_json(runbook, scale_out[1])
        assert {n: runbook.digest(n) for n in ("etcd4", "etcd5")} == before, "a plan wrote files"
        for name in ("etcd4", "etcd5"):
            states = planned[name]
            assert isinstance(states, dict), states
            failed = [s["comment"] for s in states.values() if s["result"] is False]
            assert not failed, failed  # a plan, not a traceback
            comment = next(s["comment"] for k, s in states.items() if RUNNING in k)
            assert f"would add {name}" in comment and "3 (quorum 2) -> 4 (quorum 3)" in comment, comment
        assert members(runbook) == MEMBERS, "a plan changed the membership"
        rc, out = run(runbook, scale_out[2])  # no etcd.ca in between: the CA follows pillar
        assert rc == 0, out
        assert members(runbook) == sorted(FIVE)
        # "One at a time, by hand": the scale orchestration, here to go back to three.
        set_site(runbook, site_of(runbook, MEMBERS))
        rc, out = run(runbook, command(membership, "etcd.orch.scale"))
        assert rc == 0 and "Failed:    0" in out, out
        time.sleep(1)
    assert members(runbook) == MEMBERS
    assert_no_loss(runbook, traffic)


def test_replace_refuses_a_healthy_member_then_replaces_a_failed_one(runbook):
    set_site(runbook, site_of(runbook, MEMBERS))
    replace = command(blocks("Membership: scale out, scale in, replace a failed member"), "replace_member")
    old = member_ids(runbook)
    rc, out = run(runbook, replace)
    assert "etcd3 is started and serves: it has not failed" in out and "Failed:    0" not in out, out
    assert member_ids(runbook) == old
    # Its disk is gone: now the same command replaces it.
    runbook.exec("etcd3", "systemctl", "stop", "etcd", check=True)
    runbook.exec("etcd3", "rm", "-rf", "/var/lib/etcd/member", check=True)
    rc, out = run(runbook, replace)
    assert rc == 0 and "Failed:    0" in out, out
    now = member_ids(runbook)
    assert sorted(now) == MEMBERS and now["etcd3"] != old["etcd3"], now


def test_rolling_orchestration_and_the_lock_as_written(runbook):
    rolling = command(blocks("Rolling changes: guarded restarts, upgrades"), "etcd.orch.rolling")
    site = site_of(runbook, MEMBERS)
    site["etcd"]["tuning"]["snapshot_count"] = 90000
    set_site(runbook, site)
    plans = {n: runbook.salt(n, "etcd_rolling.plan")[n]["reasons"] for n in MEMBERS}
    assert all(p == ["flags changed: ETCD_SNAPSHOT_COUNT"] for p in plans.values()), plans
    rc, out = run(runbook, rolling)
    assert rc == 0 and "Failed:    0" in out, out
    assert all(runbook.salt(n, "etcd_rolling.plan")[n]["reasons"] == [] for n in MEMBERS)
    lock, holder, unlock = blocks("Membership: scale out, scale in, replace a failed member")[-1]
    assert run_json(runbook, lock)["etcd1"]["locked"] is True
    got = run_json(runbook, holder)["etcd1"]
    assert got["holder"] == "etcd1" and got["purpose"] == "kernel update", got
    assert run_json(runbook, unlock)["etcd1"]["unlocked"] is True


# A consumer outside the cluster that reads its bundle files for every request (as curl
# does), each read tried on the members in turn, as a client with several endpoints would.
READER = r"""
ok=0; fail=0; n=0
while [ ! -e /run/reader.stop ]; do
  read_ok=
  for i in 0 1 2; do
    ip=$(echo {ips} | cut -d' ' -f$(( (n + i) % 3 + 1 )))
    if curl -sf --max-time 3 --cacert {d}/etcd-client-ca.crt --cert {d}/etcd-client.crt --key {d}/etcd-client.key \
        -X POST https://$ip:2379/v3/kv/range -d '{{"key":"cmVhZGVy"}}' -o /dev/null; then read_ok=1; break; fi
  done
  if [ -n "$read_ok" ]; then ok=$((ok+1)); else fail=$((fail+1)); date +%T.%N >> /run/reader.failures; fi
  n=$((n+1)); sleep 0.2
done
echo "$ok $fail" > /run/reader.counts
"""


def start_reader(lab, name, directory="/etc/etcd-client"):
    lab.exec(name, "rm", "-f", "/run/reader.stop", "/run/reader.counts", "/run/reader.failures", check=True)
    script = READER.format(ips=" ".join(lab.ip(n) for n in MEMBERS), d=directory)
    lab.exec(name, "systemd-run", "--quiet", "--unit=bundle-reader", "bash", "-c", script, check=True)


def stop_reader(lab, name):
    """(reads that succeeded, reads that failed on every member)."""
    lab.exec(name, "touch", "/run/reader.stop", check=True)
    lab.wait(lambda: lab.exec(name, "test", "-s", "/run/reader.counts").returncode == 0, 30, 0.2, f"{name}'s reader")
    ok_, failed = lab.exec(name, "cat", "/run/reader.counts", check=True).stdout.split()
    return int(ok_), int(failed)


def issuer(lab, name, path):
    return lab.exec(name, "openssl", "x509", "-noout", "-issuer", "-in", path, check=True).stdout.strip()


def test_ca_rotation_as_written_keeps_every_consumer_reading(runbook):
    rotation = next(b for b in blocks("TLS") if "etcd_ca.rotate_ca" in b[0])
    assert len(rotation) == 4 and "bundles: {app1: /etc/etcd-client}" in rotation[1], rotation
    # The README's consumers in the lab: k8s-master1 -> etcd5 (the Kubernetes minion),
    # app1 -> etcd4 (any other consumer, its bundle in /etc/etcd-client).
    rotation = [line.replace("k8s-master1", "etcd5").replace("app1", "etcd4") for line in rotation]
    site = site_of(runbook, MEMBERS)
    site["etcd"]["tls"]["bundle_minions"] = ["etcd4", "etcd5"]
    site["etcd"]["kubernetes"] = {"minion": "etcd5"}
    set_site(runbook, site)
    runbook.salt("etcd4", "etcd_tls.client_bundle", "/etc/etcd-client")
    ok(runbook.apply("etcd5", sls="etcd.kubernetes")["etcd5"])
    before = {n: issuer(runbook, n, "/etc/etcd-client/etcd-client.crt") for n in ("etcd4", "etcd5")}
    for name in ("etcd4", "etcd5"):
        start_reader(runbook, name)
    try:
        rotated = run_json(runbook, rotation[0])[CA]["changes"]
        assert sorted(rotated) == ["client_ca", "peer_ca"], rotated
        rc, out = run(runbook, rotation[1])
        assert rc == 0 and "Failed:    0" in out, out
        for name in ("etcd4", "etcd5"):  # both CAs, a certificate from the new one
            assert (
                runbook.exec(name, "grep", "-c", "BEGIN CERT", "/etc/etcd-client/etcd-client-ca.crt").stdout.strip()
                == "2"
            )
            assert issuer(runbook, name, "/etc/etcd-client/etcd-client.crt") != before[name]
        rc, out = run(runbook, rotation[2])
        assert rc == 0, out
        rc, out = run(runbook, rotation[3])
        assert rc == 0 and "Failed:    0" in out, out
        for name in MEMBERS:  # the old CA is gone from every member
            assert runbook.exec(name, "grep", "-c", "BEGIN CERT", "/etc/etcd/pki/client-ca.crt").stdout.strip() == "1"
    finally:
        counts = {n: stop_reader(runbook, n) for n in ("etcd4", "etcd5")}
    print(f"\nCA rotation as written: consumers' reads (ok, failed): {counts}")
    assert all(failed == 0 and good > 20 for good, failed in counts.values()), counts


def test_dry_run_on_a_node_with_certificates_from_the_retired_ca(runbook):
    # etcd4 was a member before the rotation: its member certificates come from the CA
    # retired above, so the cluster refuses them. The plan reads the mine instead, and
    # the apply renews them and joins, as planned.
    subject = runbook.exec("etcd1", "openssl", "x509", "-noout", "-subject", "-in", "/etc/etcd/pki/client-ca.crt")
    current = subject.stdout.strip().replace("subject=", "issuer=", 1)
    assert issuer(runbook, "etcd4", "/etc/etcd/pki/admin.crt") != current, "etcd4's certificates are current"
    runbook.salt("etcd1", "schedule.run_job", "etcd-health")
    four = site_of(runbook, MEMBERS + ["etcd4"])
    set_site(runbook, four)
    planned = run_json(runbook, "salt etcd4 state.apply etcd test=True")["etcd4"]
    assert isinstance(planned, dict), planned
    assert not [s["comment"] for s in planned.values() if s["result"] is False], planned
    comment = next(s["comment"] for k, s in planned.items() if RUNNING in k)
    assert "would add etcd4" in comment and "health report" in comment and "in the mine" in comment, comment
    certs = next(s["comment"] for k, s in planned.items() if "etcd-tls-certificates" in k)
    assert "would issue" in certs and "not issued by the trusted CA" in certs, certs
    ok(runbook.apply("etcd4")["etcd4"])
    assert members(runbook) == sorted(MEMBERS + ["etcd4"])


def test_plan_first_and_removing_etcd_as_written(runbook):
    # After the previous test etcd4 is the fourth member: the README's examples exactly.
    assert members(runbook) == sorted(MEMBERS + ["etcd4"])
    plans = run_json(
        runbook, command(blocks("Membership: scale out, scale in, replace a failed member"), "etcd_membership.plan")
    )
    assert all(plans[n]["action"] == "none" for n in MEMBERS + ["etcd4"]), plans
    (refuse,), (dry, forced) = blocks("Removing etcd from a node: etcd.clean")
    rc, out = run(runbook, refuse)
    assert rc != 0 and "refuses to take a live member out" in out, out
    assert members(runbook) == sorted(MEMBERS + ["etcd4"])
    rc, out = run(runbook, dry)
    assert "would remove etcd4 from the cluster (voting members 4 -> 3)" in out, out
    assert members(runbook) == sorted(MEMBERS + ["etcd4"])
    rc, out = run(runbook, forced)
    assert rc == 0 and "etcd4 left the cluster" in out, out
    assert members(runbook) == MEMBERS
    assert runbook.exec("etcd4", "test", "-e", "/etc/etcd").returncode != 0
