"""The lab's network: one bridge per run, one network namespace per node.

The lab makes each node's namespace and veth itself (rather than nspawn's
--network-bridge) so the veth names carry the run id (two runs never clash on
`vb-etcd1`) and the namespace, with its address, survives a node crash. Nodes get no
default route and ip_forward is never touched, so no lab traffic leaves the machine.
"""

from pathlib import Path

from labkit.sh import ok, run


def bridge_up(state):
    br = state["bridge"]
    if not ok("ip", "link", "show", br):
        run("ip", "link", "add", br, "type", "bridge")
    run("ip", "addr", "replace", f"{state['gateway']}/24", "dev", br)
    run("ip", "link", "set", br, "up")


def node_net_up(state, name):
    node = state["nodes"][name]
    ns, veth = node["netns"], node["veth"]
    if not Path(f"/run/netns/{ns}").exists():
        run("ip", "netns", "add", ns)
    if not ok("ip", "link", "show", veth):
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "host0", "netns", ns)
    run("ip", "link", "set", veth, "master", state["bridge"])
    run("ip", "link", "set", veth, "up")
    run("ip", "-n", ns, "addr", "replace", f"{node['ip']}/24", "dev", "host0")
    run("ip", "-n", ns, "link", "set", "host0", "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")


def partition(state, a, b):
    """Cut traffic between two nodes both ways (no netem or iptables here: routes)."""
    na, nb = state["nodes"][a], state["nodes"][b]
    for src, dst in ((na, nb), (nb, na)):
        run("ip", "-n", src["netns"], "route", "replace", "blackhole", f"{dst['ip']}/32")


def isolate(state, name):
    run("ip", "link", "set", state["nodes"][name]["veth"], "down")


def heal(state):
    for node in state["nodes"].values():
        if not Path(f"/run/netns/{node['netns']}").exists():
            continue
        routes = run("ip", "-n", node["netns"], "route", "show", "type", "blackhole").stdout
        for line in routes.splitlines():
            run("ip", "-n", node["netns"], "route", "del", "blackhole", line.split()[1])
        if ok("ip", "link", "show", node["veth"]):
            run("ip", "link", "set", node["veth"], "up")


def net_down(state):
    """Remove the run's namespaces (their veths go with them) and its bridge."""
    for node in state["nodes"].values():
        if ok("ip", "link", "show", node["veth"]):
            run("ip", "link", "del", node["veth"], check=False)
        if Path(f"/run/netns/{node['netns']}").exists():
            run("ip", "netns", "del", node["netns"], check=False)
    if ok("ip", "link", "show", state["bridge"]):
        run("ip", "link", "del", state["bridge"], check=False)
