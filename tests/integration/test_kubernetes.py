"""What the seed's guide ends with: Kubernetes objects for the external cluster, the
storage operator's kvBackend.address, and the disk preflight, on real nodes.

etcd4 plays the Kubernetes control-plane node that writes the manifests and holds the
client bundle; it is not an etcd member.
"""

import base64
import json

import kubernetes_validate
import pytest
import yaml
from results import MEMBERS, by_id, changed, form_cluster, ok, set_site, wipe

from labkit.preflight import RELEASES, REPO

CA = "ca1"
WRITER = "etcd4"
MANIFEST = "/etc/etcd-formula/kubernetes/etcd.yaml"
BUNDLE = "/etc/etcd-client"
STATE = "etcd-kubernetes-manifests-etcd_kubernetes-manifests"
# A kubeconfig whose API server refuses connections: kubectl runs for real and says so.
KUBECONFIG = "/etc/etcd-formula/kubernetes/unreachable.kubeconfig"
KUBECONFIG_TEXT = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
users: [{name: none, user: {token: lab}}]
current-context: none
"""


def k8s_site(lab, **kubernetes):
    site = lab.site()
    site["etcd"]["cluster"].update(name="k8slab", bootstrap=True)
    site["etcd"]["tls"].update(enabled=True, ca_minion=CA, bundle_minions=[WRITER])
    site["etcd"]["health"] = {"schedule": False}
    site["etcd"]["kubernetes"] = dict({"minion": WRITER}, **kubernetes)
    return site


@pytest.fixture(scope="module")
def k8s(lab):
    lab.salt(CA, "saltutil.sync_all")
    site = k8s_site(lab)
    set_site(lab, site)
    ok(lab.apply(CA, sls="etcd.ca")[CA])  # the CA first: members read its certificates
    form_cluster(lab, site)
    yield lab
    wipe(lab, MEMBERS)


def manifest_docs(lab):
    text = lab.exec(WRITER, "cat", MANIFEST, check=True).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:  # Kubernetes' own schema, strict: no field it would drop
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    return {d["kind"]: d for d in docs}


def kubernetes_state(lab, minion=WRITER):
    return by_id(lab.apply(minion, sls="etcd.kubernetes")[minion])[STATE]


def test_manifests_match_the_live_cluster(k8s):
    ret = ok(k8s.apply(WRITER, sls="etcd.kubernetes")[WRITER])
    assert "PRIVATE KEY" not in json.dumps(ret)
    assert k8s.exec(WRITER, "stat", "-c", "%a %U", MANIFEST).stdout.strip() == "600 root"
    docs = manifest_docs(k8s)
    assert sorted(docs) == ["EndpointSlice", "Secret", "Service"]
    live = k8s.salt("etcd1", "etcd_cluster.members")["etcd1"]["members"]
    live_hosts = sorted(m["client_urls"][0].split("//")[1].rsplit(":", 1)[0] for m in live)
    live_port = {int(m["client_urls"][0].rsplit(":", 1)[1]) for m in live}
    svc, eps = docs["Service"], docs["EndpointSlice"]
    assert "selector" not in svc["spec"]
    assert {p["port"] for p in svc["spec"]["ports"]} == live_port
    assert eps["apiVersion"] == "discovery.k8s.io/v1" and eps["addressType"] == "IPv4"
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == svc["metadata"]["name"]
    assert eps["metadata"]["namespace"] == svc["metadata"]["namespace"] == "storageos"
    assert [p["name"] for p in eps["ports"]] == [p["name"] for p in svc["spec"]["ports"]]
    assert {p["port"] for p in eps["ports"]} == live_port
    assert sorted(a for e in eps["endpoints"] for a in e["addresses"]) == live_hosts
    secret = docs["Secret"]["data"]
    assert sorted(secret) == ["etcd-client-ca.crt", "etcd-client.crt", "etcd-client.key"]
    for key in ("etcd-client-ca.crt", "etcd-client.crt"):
        on_disk = k8s.exec(WRITER, "cat", f"{BUNDLE}/{key}").stdout
        assert base64.b64decode(secret[key]).decode() == on_disk
    assert k8s.exec(WRITER, "stat", "-c", "%a", f"{BUNDLE}/etcd-client.key").stdout.strip() == "600"
    assert changed(ok(k8s.apply(WRITER, sls="etcd.kubernetes")[WRITER])) == []


def test_legacy_endpoints_only_when_asked_and_never_mirrored(k8s):
    set_site(k8s, k8s_site(k8s, legacy_endpoints=True))
    ok(k8s.apply(WRITER, sls="etcd.kubernetes")[WRITER])
    endpoints = manifest_docs(k8s)["Endpoints"]
    assert endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert sorted(a["ip"] for a in endpoints["subsets"][0]["addresses"]) == sorted(k8s.ip(n) for n in MEMBERS)
    set_site(k8s, k8s_site(k8s))
    ok(k8s.apply(WRITER, sls="etcd.kubernetes")[WRITER])
    assert "Endpoints" not in manifest_docs(k8s)


def test_kubectl_applies_only_when_asked_and_there(k8s):
    k8s.exec(WRITER, "bash", "-c", f"cat > {KUBECONFIG} <<'EOF'\n{KUBECONFIG_TEXT}EOF", check=True)
    marker = f"{MANIFEST}.applied"
    try:
        # apply off: kubectl is never run (it would fail against this kubeconfig).
        set_site(k8s, k8s_site(k8s, kubeconfig=KUBECONFIG))
        state = kubernetes_state(k8s)
        assert state["result"] is True and "kubectl" not in state["changes"], state
        # apply on, kubectl there: it runs, its own error comes back, the manifest stays
        # written, and nothing is recorded as applied, so the next run tries again.
        set_site(k8s, k8s_site(k8s, kubeconfig=KUBECONFIG, apply=True))
        for _ in range(2):
            state = kubernetes_state(k8s)
            assert state["result"] is False, state
            assert "kubectl apply failed (the next run retries)" in state["comment"], state["comment"]
            assert "127.0.0.1:1" in state["comment"] and "connection refused" in state["comment"], state["comment"]
            assert k8s.exec(WRITER, "test", "-e", marker).returncode == 1
        assert k8s.exec(WRITER, "stat", "-c", "%a", MANIFEST).stdout.strip() == "600"
        assert "Service" in manifest_docs(k8s)
        # apply on, no kubectl on the minion: the file is kept current, the operator told.
        set_site(k8s, k8s_site(k8s, kubeconfig=KUBECONFIG, apply=True, kubectl="/nonexistent/kubectl"))
        state = kubernetes_state(k8s)
        assert state["result"] is True and state["changes"] == {}, state
        assert "/nonexistent/kubectl is not on this minion: apply" in state["comment"], state["comment"]
    finally:
        set_site(k8s, k8s_site(k8s))
        k8s.exec(WRITER, "rm", "-f", KUBECONFIG)


def test_manifests_are_written_only_on_the_chosen_minion(k8s):
    state = kubernetes_state(k8s, "etcd1")
    assert state["result"] is False
    assert f"etcd:kubernetes:minion is {WRITER}, not etcd1" in state["comment"], state["comment"]
    assert k8s.exec("etcd1", "test", "-e", MANIFEST).returncode == 1
    assert k8s.exec("etcd1", "test", "-e", BUNDLE).returncode == 1


def test_bad_kubernetes_pillar_writes_nothing(k8s):
    before = k8s.exec(WRITER, "sha256sum", MANIFEST, check=True).stdout
    set_site(k8s, k8s_site(k8s, namespace="Storage_OS"))
    try:
        state = kubernetes_state(k8s)
    finally:
        set_site(k8s, k8s_site(k8s))
    assert state["result"] is False and "etcd:kubernetes:namespace" in state["comment"], state
    assert k8s.exec(WRITER, "sha256sum", MANIFEST, check=True).stdout == before


def test_kv_backend_address_connects_with_the_bundle(k8s):
    ok(k8s.apply(WRITER, sls="etcd.kubernetes")[WRITER])  # the client bundle, also when run alone
    address = k8s.salt("etcd2", "etcd_kubernetes.kv_backend_address")["etcd2"]
    assert address == ",".join(f"https://{k8s.ip(n)}:2379" for n in MEMBERS)
    assert k8s.exec("etcd1", "etcdctl", "put", "/k8s/probe", "from-the-operator").returncode == 0
    # A client given exactly the address string and the bundle, as the storage operator is.
    script = (
        f"import sys; sys.path.insert(0, '{REPO}/_utils'); import etcd_client\n"
        f"c = etcd_client.Client('{address}'.split(','), 2, '{BUNDLE}/etcd-client-ca.crt',"
        f" '{BUNDLE}/etcd-client.crt', '{BUNDLE}/etcd-client.key')\n"
        "print(c.get('/k8s/probe'))\n"
    )
    proc = k8s.exec(WRITER, str(REPO / ".venv/bin/python"), "-c", script)
    assert proc.stdout.strip() == "from-the-operator", proc.stderr
    # And through etcd's own Go client (gRPC, the library the storage operator links):
    # the release's etcdctl with the same string and bundle; without the client
    # certificate the members refuse it.
    tarball = RELEASES / "etcd-v3.5.1-linux-amd64.tar.gz"
    k8s.exec(WRITER, "tar", "-xzf", str(tarball), "-C", "/tmp", "etcd-v3.5.1-linux-amd64/etcdctl", check=True)
    etcdctl = ["/tmp/etcd-v3.5.1-linux-amd64/etcdctl", f"--endpoints={address}", "--dial-timeout=3s"]
    etcdctl.append(f"--cacert={BUNDLE}/etcd-client-ca.crt")
    bundle = [f"--cert={BUNDLE}/etcd-client.crt", f"--key={BUNDLE}/etcd-client.key"]
    proc = k8s.exec(WRITER, *etcdctl, *bundle, "get", "/k8s/probe", "--print-value-only")
    assert proc.stdout.strip() == "from-the-operator", proc.stderr
    proc = k8s.exec(WRITER, *etcdctl, "--command-timeout=3s", "get", "/k8s/probe", "--print-value-only")
    assert proc.returncode != 0 and "from-the-operator" not in proc.stdout, proc.stdout
    assert "authentication handshake failed: remote error: tls: bad certificate" in proc.stderr, proc.stderr


def test_disk_check_reports_plausible_figures(k8s):
    m = k8s.salt("etcd1", "etcd_health.check_disk", "seconds=2")["etcd1"]
    assert m["samples"] > 0 and m["bytes"] == m["samples"] * 2300
    assert 0 <= m["p50_ms"] <= m["p99_ms"] <= m["max_ms"]
    assert m["iops"] > 0 and m["seconds"] <= 3
    assert m["complete"] or m["seconds"] >= 2
    fstype = k8s.exec("etcd1", "findmnt", "-n", "-o", "FSTYPE", "-T", m["directory"]).stdout.strip()
    assert m["filesystem"] == fstype, (m, fstype)
    # The lab's nodes live on RAM (a tmpfs under an overlay): when the syncs show it, the
    # check says so rather than passing RAM off as a fast disk.
    assert m["no_disk"] is None or "faster than a device acknowledges a flush" in m["no_disk"], m
    assert k8s.exec("etcd1", "bash", "-c", "ls -a /var/lib/etcd | grep -c etcd-formula-disk").stdout.strip() == "0"


def test_enforced_preflight_with_an_impossible_threshold_refuses_the_install(k8s):
    # etcd4 as a fresh one-member site, with a threshold no disk meets.
    k8s.exec(
        WRITER, "bash", "-c", "systemctl stop etcd 2>/dev/null; rm -rf /var/lib/etcd /etc/systemd/system/etcd.service"
    )
    site = k8s_site(k8s)
    site["etcd"].update(members={WRITER: {"address": k8s.ip(WRITER)}}, preflight={"mode": "enforce", "p99_ms": 0.0001})
    site["etcd"]["cluster"]["name"] = "diskcheck"
    site["etcd"]["tls"]["enabled"] = False
    set_site(k8s, site)
    fstype = k8s.exec(WRITER, "findmnt", "-n", "-o", "FSTYPE", "-T", "/var/lib").stdout.strip()
    before = k8s.digest(WRITER)
    states = by_id(k8s.apply(WRITER)[WRITER])
    disk = states["etcd-install-disk-etcd_install-disk_checked"]
    assert disk["result"] is False
    assert "refusing to install: disk too slow for etcd" in disk["comment"] and "etcd:preflight" in disk["comment"]
    assert states["etcd-install-binaries-etcd_install-installed"]["result"] is False
    assert k8s.digest(WRITER) == before
    site["etcd"]["preflight"]["mode"] = "warn"
    set_site(k8s, site)
    states = by_id(k8s.apply(WRITER, "test=True")[WRITER])
    assert states["etcd-install-disk-etcd_install-disk_checked"]["result"] is None
    # warn: the same figures are a warning, and the install goes ahead.
    try:
        states = by_id(k8s.apply(WRITER, sls="etcd.install")[WRITER])
        disk = states["etcd-install-disk-etcd_install-disk_checked"]
        assert disk["result"] is True and disk["comment"].startswith("disk too slow for etcd: fdatasync p50"), disk
        assert f"on /var/lib ({fstype})" in disk["comment"], disk["comment"]
        assert disk["warnings"] == [disk["comment"]]
        assert states["etcd-install-binaries-etcd_install-installed"]["result"] is True
        assert k8s.exec(WRITER, "/usr/local/bin/etcd", "--version").stdout.startswith("etcd Version: 3.5.1")
    finally:
        k8s.exec(WRITER, "rm", "-rf", "/opt/etcd", *(f"/usr/local/bin/{b}" for b in ("etcd", "etcdctl", "etcdutl")))
