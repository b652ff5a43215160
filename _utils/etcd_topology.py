"""Where members are: their URLs, the endpoints the formula calls, certificate SANs and
the formula's own client (the one factory). Pure functions of the settings; while a
running cluster moves to TLS, `serving` (etcd_cluster.live_settings) says each member's
scheme."""

import ipaddress
import os

import etcd_client
from etcd_settings import scheme, tls_files, tls_on, tls_path


def host_of(settings, name):
    member = settings["members"][name]
    return member["fqdn"] if settings["advertise"] == "fqdn" else member["address"]


def url(scheme, host, port):
    host = f"[{host}]" if ":" in str(host) else host
    return f"{scheme}://{host}:{port}"


def client_tls(settings):
    """(ca, cert, key) for the formula's own gateway calls, or Nones without TLS: the
    CN-less gateway pair (with etcd auth on, the gateway refuses a certificate with a CN),
    or the admin pair on a member that has no gateway pair (yet: it comes with the next
    apply), or whose site leaves it out (mode files: a pair left on disk from before is
    from another CA, perhaps)."""
    if not tls_on(settings):
        return None, None, None
    pair = ("gateway_cert", "gateway_key")
    if "gateway_cert" not in tls_files(settings) or not all(os.path.isfile(tls_path(settings, w)) for w in pair):
        pair = ("admin_cert", "admin_key")
    return tuple(tls_path(settings, w) for w in ("client_ca", *pair))


def etcdctl_tls(settings):
    """(ca, cert, key) for etcdctl and etcdutl (snapshots), or Nones without TLS: the
    admin pair, whose CN (root) is the etcd user a gRPC client is once auth is on."""
    if not tls_on(settings):
        return None, None, None
    return tuple(tls_path(settings, w) for w in ("client_ca", "admin_cert", "admin_key"))


def client(settings, me, urls=None, timeout=None):
    """The formula's own client: `urls` (default: this member first, then the rest),
    bounded by `timeout` (default `service:probe_timeout`), with the admin certificate
    under TLS."""
    return etcd_client.Client(
        urls or endpoints(settings, me),
        timeout or settings["service"]["probe_timeout"],
        *client_tls(settings),
    )


BUNDLE_DIR = "/etc/etcd-client"  # where a client bundle goes unless pillar says otherwise
BUNDLE_USER = "root"


def bundle_specs(settings):
    """{minion: {"cn", "dir", "user"}}: every client bundle the site allows, pinned by
    pillar, so a bundle minion cannot choose its identity. `bundle_minions` as a list
    names minions; as a map, each value is the CN or {cn, dir, user}. The Kubernetes
    minion's CN defaults to `kubernetes:service` (the storage operator's user), the
    others' to `etcd-client`. Members may hold a bundle too (CN as for the list form).
    `dir` is where `etcd.client` keeps it (the Kubernetes Secret's bundle is in
    `kubernetes:bundle_dir`)."""
    t, k = settings["tls"], settings.get("kubernetes") or {}
    given = t.get("bundle_minions") or []

    def spec(minion, value=None):
        cn = k.get("service") if minion == k.get("minion") and k.get("service") else "etcd-client"
        out = {"cn": cn, "dir": BUNDLE_DIR, "user": BUNDLE_USER}
        if isinstance(value, str):
            out["cn"] = value
        elif isinstance(value, dict):
            out.update({key: v for key, v in value.items() if key in out and isinstance(v, str)})
        return out

    out = {m: spec(m) for m in settings.get("members") or {}}
    if isinstance(given, dict):
        out.update({m: spec(m, v) for m, v in given.items()})
    else:
        out.update({m: spec(m) for m in given})
    return out


def bundle_cns(settings):
    """{minion: the CN its client bundle certificate must carry} (bundle_specs)."""
    return {m: spec["cn"] for m, spec in bundle_specs(settings).items()}


def member_sans(settings, name):
    """What a member's server and peer certificates must name, from the site pillar only.

    Server: member IP, FQDN, minion id, localhost, 127.0.0.1, ::1 and extra SANs. Peer: the
    same, since etcd checks a peer's certificate against the address it connects from.
    The CA minion pins the same list in the member's signing policy (etcd_policies), so
    nothing a member reports about itself (its hostname grain) reaches a certificate.
    """
    member = settings["members"][name]
    dns = [d for d in (member.get("fqdn"), name, "localhost") if d]
    dns += [str(x) for x in settings["tls"].get("extra_sans") or [] if not _is_ip(x)]
    ips = [str(member["address"]), "127.0.0.1", "::1"]
    ips += [str(x) for x in settings["tls"].get("extra_sans") or [] if _is_ip(x)]
    return {"dns": sorted(set(dns)), "ip": sorted(set(ips), key=ips.index)}


def _is_ip(text):
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def peer_url(settings, name):
    return url(scheme(settings), host_of(settings, name), settings["ports"]["peer"])


def member_scheme(settings, name):
    """The scheme member `name` serves clients on: the pillar's, except while a running
    cluster moves to TLS (etcd_migration), when the live member list says."""
    return (settings.get("serving") or {}).get(name) or scheme(settings)


def client_url(settings, name):
    return url(member_scheme(settings, name), host_of(settings, name), settings["ports"]["client"])


def client_urls_any_scheme(settings, name):
    """A member's client URL over https, then over http: for a cluster half on TLS."""
    return [url(sch, host_of(settings, name), settings["ports"]["client"]) for sch in ("https", "http")]


def client_urls(settings):
    """Every member's advertised client URL, in member order."""
    return [client_url(settings, n) for n in settings["members"]]


def local_endpoint(settings, name):
    """Where this member's own formula calls go: loopback when etcd listens there."""
    if settings.get("listen_localhost"):
        return url(member_scheme(settings, name), "127.0.0.1", settings["ports"]["client"])
    return url(member_scheme(settings, name), settings["members"][name]["address"], settings["ports"]["client"])


def endpoints(settings, me):
    """Client endpoints for the formula's own calls: this member first (loopback), then the rest."""
    eps = [local_endpoint(settings, me)] if me in settings["members"] else []
    return eps + [u for u in client_urls(settings) if u not in eps]


def initial_cluster(settings, names=None):
    names = names if names is not None else list(settings["members"])
    return ",".join(f"{n}={peer_url(settings, n)}" for n in names)
