"""etcd's metrics listener and the formula's verdict for Prometheus (pure).

etcd serves /metrics on its client URLs, which with TLS ask every caller for a client
certificate: a Prometheus would need one, and with it the right to read and write every
key. `--listen-metrics-urls` serves /metrics (and /health) on a port of its own instead,
plain http, without the keyspace. etcd 3.4 and 3.5 give an https metrics URL the client
port's certificate and its client-certificate check, so https there is the client port
again: the formula offers http only, on loopback (the default, as kubeadm does) or on the
member's address for a Prometheus elsewhere (README: Metrics for Prometheus).

The health verdict is also written for node_exporter's textfile collector, so the alert
on the formula's own verdict needs no Salt on the Prometheus side.
"""

import os
import re

from etcd_names import path_problem
from etcd_topology import url

ADDRESSES = ("localhost", "member")
# The report's verdicts as a gauge; `error` is a check that itself failed.
VERDICT_CODES = {"ok": 0, "degraded": 1, "critical": 2, "error": 3}
# Prometheus label values: anything is allowed, but `"`, `\` and newlines must be escaped;
# the reasons come from the formula's own codes, so a strict pattern is simpler and safer.
_LABEL = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def listen_urls(settings, name):
    """`--listen-metrics-urls` of member `name`, or [] when the listener is off. A member
    address listener also listens on loopback when the client port does, so the formula's
    own health check reads it locally."""
    m, port = settings["metrics"], settings["ports"]["metrics"]
    if not m["enabled"]:
        return []
    urls = []
    if m["address"] == "member":
        urls.append(url("http", settings["members"][name]["address"], port))
    if m["address"] == "localhost" or settings.get("listen_localhost"):
        urls.append(url("http", "127.0.0.1", port))
    return urls


def local_url(settings, name):
    """Where this member's health check reads its metrics: the metrics listener when it is
    on (plain http, no handshake), else None (the client URL serves them too)."""
    urls = listen_urls(settings, name)
    return urls[-1] if urls else None


def scrape_targets(settings):
    """host:port per member for a Prometheus scrape config; [] unless on the member address."""
    m = settings["metrics"]
    if not (m["enabled"] and m["address"] == "member"):
        return []
    port = settings["ports"]["metrics"]
    return [url("http", member["address"], port).split("://", 1)[1] for member in settings["members"].values()]


def textfile(report, cluster, member):
    """The verdict in Prometheus' text format for node_exporter's textfile collector:
    `etcd_formula_health_verdict` 0 ok, 1 degraded, 2 critical, 3 check failed; one
    `etcd_formula_health_reason` series per coded reason; the time of the check."""
    for what, value in (("cluster", cluster), ("member", member)):
        if not isinstance(value, str) or not _LABEL.match(value):
            raise ValueError(f"{what} {value!r} is not a plain name")
    labels = f'cluster="{cluster}",member="{member}"'
    verdict = report.get("verdict")
    lines = [
        "# HELP etcd_formula_health_verdict etcd-formula health verdict: 0 ok, 1 degraded, 2 critical, 3 check failed.",
        "# TYPE etcd_formula_health_verdict gauge",
        f"etcd_formula_health_verdict{{{labels}}} {VERDICT_CODES.get(verdict, 3)}",
        "# HELP etcd_formula_health_reason A coded reason of the verdict (1 while it holds).",
        "# TYPE etcd_formula_health_reason gauge",
    ]
    codes = sorted({r.get("code") for r in report.get("reasons") or [] if isinstance(r, dict)} - {None})
    for code in codes:
        if _LABEL.match(str(code)):
            lines.append(f'etcd_formula_health_reason{{{labels},code="{code}"}} 1')
    lines += [
        "# HELP etcd_formula_health_checked_seconds When the check ran (Unix time).",
        "# TYPE etcd_formula_health_checked_seconds gauge",
        f"etcd_formula_health_checked_seconds{{{labels}}} {float(report.get('time') or 0):.0f}",
    ]
    return "\n".join(lines) + "\n"


def write_textfile(path, text):
    """Atomically: node_exporter must never read half a file (write beside, then rename)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def validate(settings, findings):
    m = findings.section(settings, "metrics")
    if m is None:
        return
    findings.booleans("metrics", m, ("enabled",))
    if m.get("address") not in ADDRESSES:
        findings.error(
            "metrics:address",
            f"must be localhost or member, not {m.get('address')!r}",
            "localhost: only this node reads the metrics; member: a Prometheus elsewhere scrapes them",
        )
    elif m.get("enabled") and m["address"] == "localhost" and settings.get("listen_localhost") is False:
        findings.error(
            "metrics:address",
            "is localhost, but `etcd:listen_localhost` is false: nothing of etcd's may listen on 127.0.0.1",
            "set `etcd:metrics:address: member` (or `etcd:metrics:enabled: false`)",
        )
    if m.get("scheme") != "http":
        findings.error(
            "metrics:scheme",
            f"only http is offered, not {m.get('scheme')!r}: etcd 3.4/3.5 serve an https metrics URL with the "
            "client port's certificate and client-certificate check, so a scraper would need a client certificate",
            "set `etcd:metrics:scheme: http` and limit who reaches the port (README: Metrics for Prometheus)",
        )
    path = m.get("textfile")
    if path is not None:
        problem = path_problem(path, own=False)
        if problem or not path.endswith(".prom"):
            findings.error(
                "metrics:textfile",
                problem[0] if problem else f"{path!r} does not end in .prom (node_exporter reads only those)",
                "e.g. /var/lib/prometheus/node-exporter/etcd_formula.prom in node_exporter's textfile directory, "
                "or null",
            )
    ports = settings.get("ports") or {}
    port = findings.whole("ports:metrics", ports.get("metrics"), 1, 65535, "use a free TCP port, e.g. 2381")
    if port and port in (ports.get("client"), ports.get("peer")):
        findings.error("ports:metrics", f"{port} is also the client or peer port", "use a port of its own, e.g. 2381")
