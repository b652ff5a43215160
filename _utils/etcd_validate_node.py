"""The rules about the node itself, beside etcd_validate's rules about pillar (pure: the
caller gathers the node's facts). Each error names the pillar key and the fix."""


def member_address(settings, me):
    """This minion's address in pillar, or None (members as a list is refused elsewhere)."""
    members = settings.get("members") if isinstance(settings.get("members"), dict) else {}
    entry = members.get(me) if isinstance(members.get(me), dict) else {}
    return entry.get("address")


def _loopback(ip):
    return ip.startswith("127.") or ip == "::1" or ip.lower().startswith("fe80:")


def errors(settings, me, as_member, address_is_local, node_ips, runs_https_with_data):
    """`address_is_local`: the pillar address is bound here; `node_ips`: the node's
    addresses (its grains); `runs_https_with_data`: this member has data and last
    started with https:// URLs."""
    out = []
    address = member_address(settings, me)
    if as_member and address and not address_is_local:
        # etcd listens on the member's address: on another node's (or a mistyped) one it
        # would crash-loop, and a running member would be restarted into that.
        mine = [ip for ip in node_ips if not _loopback(ip)]
        out.append(
            {
                "key": f"etcd:members:{me}:address",
                "message": f"{address} is not an address of this node ({me}): etcd could not listen on it",
                "fix": f"set `etcd:members:{me}:address` to this node's IP"
                + (f" (it has {', '.join(mine)})" if mine else ""),
            }
        )
    if runs_https_with_data and not (settings.get("tls") or {}).get("enabled"):
        out.append(
            {
                "key": "etcd:tls:enabled",
                "message": "this member runs with https:// URLs: the formula turns TLS on for a running cluster, "
                "never off (every client and peer would lose its authentication)",
                "fix": "set `etcd:tls:enabled` back to true; to leave TLS, take a snapshot and restore it into a "
                "new cluster (README: TLS)",
            }
        )
    return out
