"""Turning TLS on for a running plain-HTTP cluster: the rules (pure), and live_view, the
one place that asks the cluster where its members serve meanwhile.

A member's peers reach it at the peer URL the cluster records for it, and a member
dials an https peer only when it has peer certificates itself. So the switch takes two
guarded restarts per member, each pass one member at a time:

1. ``peer-creds``: every URL stays http, but etcd gets its peer certificate, key and
   peer CA, so that it can dial peers that already listen on https.
2. ``https``: once every member runs with peer credentials (their records in etcd say
   so), a member restarts with TLS on both ports, and its recorded peer URL is updated
   to https right after (``member update``, through the other members).

Meanwhile the formula's own calls go to each member at the scheme it serves, as the
live member list advertises it (``serving``).
"""

import etcd_client
import etcd_keys
import etcd_rotation
import etcd_topology

HTTP, PEER_CREDS, HTTPS = "http", "peer-creds", "https"


def stage_of(flags):
    """The TLS stage a member runs, from the flags it started with (started.json)."""
    flags = flags or {}
    if str(flags.get("ETCD_LISTEN_PEER_URLS", "")).startswith("https://"):
        return HTTPS
    return PEER_CREDS if flags.get("ETCD_PEER_CERT_FILE") else HTTP


def wanted_stage(running, records, members):
    """The stage a member running `running` should restart into next. `records`: the
    members' TLS records ({name: {"peer_tls": bool, ...}}), `members`: the live names."""
    if running == HTTP:
        return PEER_CREDS
    if running == PEER_CREDS:
        ready = all((records.get(m) or {}).get("peer_tls") for m in members)
        return HTTPS if ready and members else PEER_CREDS
    return HTTPS


def serving(listing):
    """{name: scheme} of each started member's advertised client URL."""
    return {
        m["name"]: m["client_urls"][0].split("://")[0] for m in listing["members"] if m["name"] and m["client_urls"]
    }


def finished(listing):
    """Whether every member advertises https on both its peer and its client URLs."""
    urls = [u for m in listing["members"] for u in m["peer_urls"] + m["client_urls"]]
    return bool(urls) and all(u.startswith("https://") for u in urls)


def live_view(s, me, started, marker, client_for):
    """While a running plain-HTTP cluster moves to TLS: ({"serving": each member's scheme
    now, "tls_stage": this member's next stage}, whether the ``tls-migration`` marker
    should exist: True, False or None for no opinion). `started`: this member's
    started.json; `marker`: whether the marker exists; `client_for(urls)`: the formula's
    client. Asks the cluster only while TLS is not finished here."""
    running = stage_of(started.get("flags"))
    if running == HTTPS and not marker:
        return {}, None
    own = {me: "https" if running == HTTPS else "http"}
    urls = [etcd_topology.local_endpoint(dict(s, serving=own), me)]
    for name in s["members"]:
        if name != me:
            urls += etcd_topology.client_urls_any_scheme(s, name)
    client = client_for(urls)
    try:
        listing = client.member_list()
        records = client.get_prefix(etcd_keys.tls_records(s["cluster"]["name"]))
    except etcd_client.EtcdError:
        return {"serving": own}, None  # nobody answers: only this member's own scheme is known
    now = dict(serving(listing), **own)  # its own, as it runs now
    if running != HTTPS:
        stage = wanted_stage(running, etcd_rotation.parse_records(records), etcd_rotation.member_names(listing))
        return {"serving": now, "tls_stage": stage}, True
    if finished(listing):
        return {}, False
    return {"serving": now}, None
