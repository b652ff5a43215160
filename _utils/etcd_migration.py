"""Turning TLS on for a running plain-HTTP cluster (pure rules).

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
