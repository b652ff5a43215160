"""Kubernetes objects from the settings, the kvBackend address, and the disk check's figures."""

import base64
import os

import etcd_disk
import etcd_k8s
import etcd_settings
import etcd_validate
import kubernetes_validate
import pytest

# EndpointSlice discovery.k8s.io/v1 is GA since 1.21: validate against the oldest and the
# newest schemas kubernetes-validate bundles, strictly (no field Kubernetes would drop).
SCHEMAS = ("1.25.0", "1.37.0")
BUNDLE = {"ca": b"CA", "cert": b"CERT", "key": b"KEY"}


def settings(**over):
    pillar = {
        "cluster": {"name": "lab"},
        "members": {f"etcd{i}": {"address": f"10.0.0.1{i}"} for i in (1, 2, 3)},
        "ports": {"client": 12379, "peer": 12380},
        "tls": {"enabled": False},
    }
    pillar.update(over)
    return etcd_settings.merge(pillar)


def test_kv_backend_address_lists_every_client_url_with_the_scheme():
    assert (
        etcd_k8s.kv_backend_address(settings())
        == "http://10.0.0.11:12379,http://10.0.0.12:12379,http://10.0.0.13:12379"
    )
    tls = settings(tls={"enabled": True, "ca_minion": "ca1"})
    assert etcd_k8s.kv_backend_address(tls).startswith("https://10.0.0.11:12379,https://")


def test_service_and_endpointslice_agree_on_names_ports_and_addresses():
    docs = {d["kind"]: d for d in etcd_k8s.manifests(settings())}
    assert sorted(docs) == ["EndpointSlice", "Service"]
    svc, eps = docs["Service"], docs["EndpointSlice"]
    assert "selector" not in svc["spec"]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == svc["metadata"]["name"] == "storageos-etcd"
    assert eps["addressType"] == "IPv4"
    assert eps["ports"][0]["name"] == svc["spec"]["ports"][0]["name"]
    assert eps["ports"][0]["port"] == svc["spec"]["ports"][0]["port"] == 12379
    assert [e["addresses"][0] for e in eps["endpoints"]] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.11", "10.0.0.12", "10.0.0.13"],
        ["fd00::11", "fd00::12", "fd00::13"],
        ["10.0.0.11", "fd00::12", "10.0.0.13"],
    ],
    ids=["ipv4", "ipv6", "mixed"],
)
@pytest.mark.parametrize("version", SCHEMAS)
def test_every_object_passes_the_kubernetes_schema(addresses, version):
    members = {f"etcd{i}": {"address": a} for i, a in enumerate(addresses, 1)}
    s = settings(members=members, kubernetes={"legacy_endpoints": True})
    docs = etcd_k8s.manifests(s, BUNDLE)
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError
    slices = [d for d in docs if d["kind"] == "EndpointSlice"]
    # One slice per address family, each holding exactly that family's members.
    assert sorted((d["addressType"], len(d["endpoints"])) for d in slices) == sorted(
        (f, sum(etcd_k8s.address_type(a) == f for a in addresses))
        for f in {etcd_k8s.address_type(a) for a in addresses}
    )
    assert len({d["metadata"]["name"] for d in slices}) == len(slices)
    listed = [e["addresses"][0] for d in slices for e in d["endpoints"]]
    assert sorted(listed) == sorted(addresses)
    # The Service's cluster IP family follows the members': IPv6 when all are, both when mixed.
    spec = docs[0]["spec"]
    want = {"ipv4": {}, "ipv6": {"ipFamilies": ["IPv6"]}, "mixed": {"ipFamilyPolicy": "PreferDualStack"}}
    kind = "mixed" if len(slices) == 2 else slices[0]["addressType"].lower()
    assert {k: spec[k] for k in ("ipFamilies", "ipFamilyPolicy") if k in spec} == want[kind]


def test_a_broken_object_fails_the_schema():
    # The validator is no rubber stamp: the same check refuses what Kubernetes would.
    eps = etcd_k8s.manifests(settings())[1]
    eps["endpoints"][0]["addresses"] = "10.0.0.11"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(eps, SCHEMAS[-1], strict=True)


def test_legacy_endpoints_are_marked_and_the_secret_has_the_operator_keys():
    s = settings(kubernetes={"legacy_endpoints": True, "namespace": "kube-storage"})
    docs = {d["kind"]: d for d in etcd_k8s.manifests(s, BUNDLE)}
    assert docs["Endpoints"]["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"kube-storage"}
    data = docs["Secret"]["data"]
    assert {k: base64.b64decode(v) for k, v in data.items()} == {
        "etcd-client-ca.crt": b"CA",
        "etcd-client.crt": b"CERT",
        "etcd-client.key": b"KEY",
    }


def test_kubernetes_and_preflight_mistakes_name_their_key():
    bad = {"kubernetes": {"namespace": "Storage_OS"}, "preflight": {"mode": "strict"}}
    s = settings(**bad)
    report = etcd_validate.validate({"cluster": {"name": "lab"}, **bad}, s, "etcd1")
    keys = {e["key"] for e in report["errors"]}
    assert {"etcd:kubernetes:namespace", "etcd:preflight:mode"} <= keys


def test_service_name_and_kubernetes_minion_are_checked():
    bad = {"kubernetes": {"service": "1etcd", "minion": ["k8s1"]}}
    report = etcd_validate.validate({"cluster": {"name": "lab"}, **bad}, settings(**bad), "etcd1")
    assert {"etcd:kubernetes:service", "etcd:kubernetes:minion"} <= {e["key"] for e in report["errors"]}


def test_a_consumer_is_validated_without_being_a_member():
    s = settings(kubernetes={"minion": "k8s1"})
    assert etcd_validate.validate({"cluster": {"name": "lab"}}, s, "k8s1", as_member=False)["valid"] is True
    as_member = etcd_validate.validate({"cluster": {"name": "lab"}}, s, "k8s1")
    assert [e["key"] for e in as_member["errors"]] == ["etcd:members"]


def test_preflight_short_form_sets_the_mode():
    s = settings(preflight="enforce")
    assert s["preflight"] == {"mode": "enforce", "p99_ms": 10, "seconds": 10}
    report = etcd_validate.validate({"cluster": {"name": "lab"}, "preflight": "enforce"}, s, "etcd1")
    assert not [e for e in report["errors"] if e["key"].startswith("etcd:preflight")]


def test_disk_check_is_bounded_and_leaves_nothing(tmp_path):
    target = tmp_path / "not" / "yet" / "etcd"
    m = etcd_disk.measure(str(target), seconds=0.5, total=2300 * 50)
    assert m["directory"] == str(tmp_path)
    assert m["samples"] == 50 and m["complete"] is True
    assert m["p50_ms"] <= m["p99_ms"] <= m["max_ms"]
    assert os.listdir(tmp_path) == []


MOUNTINFO = """\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /var/lib rw shared:2 - tmpfs tmpfs rw
31 30 252:16 / /var/lib/etcd\\040data rw shared:3 - xfs /dev/vdb rw
"""


def test_filesystem_is_the_longest_mount_above_the_path(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert etcd_disk.filesystem("/var/lib/etcd data/member", str(info)) == "xfs"
    assert etcd_disk.filesystem("/var/lib/etcd", str(info)) == "tmpfs"  # not /var/lib/etcd data
    assert etcd_disk.filesystem("/var/library", str(info)) == "ext4"  # not under /var/lib
    assert etcd_disk.filesystem("/x", str(tmp_path / "missing")) is None


def test_disk_check_names_the_filesystem(tmp_path):
    m = etcd_disk.measure(str(tmp_path), seconds=0.2, total=2300 * 5)
    assert m["filesystem"] == etcd_disk.filesystem(str(tmp_path)) and m["filesystem"]


def test_figures_from_ram_are_flagged():
    assert etcd_disk.no_disk("tmpfs", 3.0) == "tmpfs is RAM"
    assert "faster than a device acknowledges a flush" in etcd_disk.no_disk("overlay", 0.002)
    assert etcd_disk.no_disk("ext4", 0.4) is None
    assert etcd_disk.no_disk("ext4", None) is None


def test_percentile_of_a_known_series():
    values = list(range(1, 101))
    assert etcd_disk.percentile(values, 99) == 99
    assert etcd_disk.percentile(values, 50) == 50
    assert etcd_disk.percentile([], 99) is None


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(0.0003, 0.001), (0.0, 0.0), (1.2341, 1.235), (10.0, 10.0), (0.001, 0.001)],
)
def test_latencies_are_rounded_up_never_down(ms, shown):
    # A RAM-backed flush (0.3 us) shown as 0.000 ms passed an enforced threshold of 0.0001 ms.
    assert etcd_disk.up_to_us(ms) == shown
