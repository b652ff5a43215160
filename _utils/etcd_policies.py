"""The CA minion's x509_v2 signing policies: a pure function of the site's settings.

One policy per member and use (``etcd_server:<id>``, ``etcd_peer:<id>``,
``etcd_admin:<id>``, ``etcd_gateway:<id>``), usable by that minion only, with its subject
and SANs pinned: x509_v2 lets a policy's values override the request's, so what is pinned
here is what the certificate says, whatever the requesting minion asked for. Client
bundles get ``etcd_client:<id>`` with the CN pillar gives them (``etcd_topology.bundle_cns``).

Two identities matter once etcd auth is on (etcd_auth): the admin certificate's CN is
``root`` on every member (etcdctl over gRPC is the user its CN names; one name, so a
member that joins needs no user made for it), and the gateway certificate has no CN at
all (the JSON gateway refuses a client certificate with one when auth is on): its
subject is pinned whole, which makes x509_v2 ignore every name attribute a request adds.
"""

import os

import etcd_tls
import etcd_topology

GRAIN = "x509_signing_policies"  # where x509_v2 finds them (config.get) on the CA minion
POLICY = {
    "server": "etcd_server",
    "peer": "etcd_peer",
    "admin": "etcd_admin",
    "gateway": "etcd_gateway",
    "client": "etcd_client",
}
CA_STEMS = {"client_ca": "client-ca", "peer_ca": "peer-ca"}


def policy_name(kind, minion):
    """The policy a minion asks for: its own, per use (``etcd_server:etcd1``, ``etcd_client:k8s1``)."""
    return f"{POLICY[kind]}:{minion}"


def signing_policies(s):
    t = s["tls"]
    base = {
        "basicConstraints": "critical, CA:false",
        "keyUsage": "critical, digitalSignature, keyEncipherment",
        "days_valid": t["days_valid"],
    }

    def policy(ca, eku, minions, **pinned):
        return dict(
            base,
            signing_private_key=os.path.join(t["ca_dir"], f"{CA_STEMS[ca]}.key"),
            signing_cert=os.path.join(t["ca_dir"], f"{CA_STEMS[ca]}.crt"),
            extendedKeyUsage=eku,
            minions=minions,
            **pinned,
        )

    out = {}
    for name in sorted(s["members"]):
        # A plain minion id (no '@') is matched on the CA minion itself: no master round trip.
        sans = etcd_tls.san_string(etcd_topology.member_sans(s, name))
        out[policy_name("server", name)] = policy(
            "client_ca", "serverAuth, clientAuth", name, CN=name, subjectAltName=sans
        )
        out[policy_name("peer", name)] = policy("peer_ca", "serverAuth, clientAuth", name, CN=name, subjectAltName=sans)
        out[policy_name("admin", name)] = policy("client_ca", "clientAuth", name, CN=etcd_tls.ADMIN_CN)
        out[policy_name("gateway", name)] = policy("client_ca", "clientAuth", name, subject=etcd_tls.GATEWAY_SUBJECT)
    for minion, cn in sorted(etcd_topology.bundle_cns(s).items()):
        out[policy_name("client", minion)] = policy("client_ca", "clientAuth", minion, CN=cn)
    return out
