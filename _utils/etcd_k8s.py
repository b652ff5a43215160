"""Kubernetes objects for an etcd cluster that runs outside Kubernetes, from the settings.

A Service without selector and an EndpointSlice listing every member on the client port
let pods reach etcd by a cluster DNS name; with TLS a Secret carries the client bundle
under the keys the storage operator reads. Pure functions: the caller supplies the bundle
files' contents and writes the result.
"""

import base64
import ipaddress

import etcd_topology

SECRET_KEYS = {"ca": "etcd-client-ca.crt", "cert": "etcd-client.crt", "key": "etcd-client.key"}
PORT_NAME = "etcd-client"


def kv_backend_address(settings):
    """The storage operator's `kvBackend.address`: every member's client URL, comma-separated."""
    return ",".join(etcd_topology.client_urls(settings))


def address_type(ip):
    """An EndpointSlice's addressType for `ip`."""
    return f"IPv{ipaddress.ip_address(ip).version}"


def _meta(k, name, extra_labels=None):
    labels = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/managed-by": "etcd-formula"}
    labels.update(extra_labels or {})
    return {"name": name, "namespace": k["namespace"], "labels": labels}


def manifests(settings, bundle=None):
    """The objects, as a list of dicts in apply order. `bundle`: {ca, cert, key} file contents."""
    k = settings["kubernetes"]
    port = settings["ports"]["client"]
    ips = [str(settings["members"][n]["address"]) for n in settings["members"]]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(k, k["service"]),
        # No selector: Kubernetes does not manage the endpoints; the EndpointSlices below do.
        "spec": {"ports": [{"name": PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}]},
    }
    docs = [service]
    by_family = {}
    for ip in ips:
        by_family.setdefault(address_type(ip), []).append(ip)
    families = [f for f in ("IPv4", "IPv6") if f in by_family]
    if families == ["IPv6"]:  # the Service's cluster IP in the members' family
        service["spec"]["ipFamilies"] = ["IPv6"]
    elif len(families) == 2:  # both families where the cluster is dual-stack, else its own
        service["spec"]["ipFamilyPolicy"] = "PreferDualStack"
    # An EndpointSlice holds one address family: IPv4 members in `<service>-members`,
    # IPv6 members (if any) in `<service>-members-ipv6`.
    for family in families:
        addresses = by_family[family]
        suffix = "-ipv6" if family == "IPv6" else ""
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": _meta(k, f"{k['service']}-members{suffix}", {"kubernetes.io/service-name": k["service"]}),
                "addressType": family,
                "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in addresses],
            }
        )
    if k["legacy_endpoints"]:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                # Marked so that the EndpointSlice mirroring controller leaves it alone.
                "metadata": _meta(k, k["service"], {"endpointslice.kubernetes.io/skip-mirror": "true"}),
                "subsets": [
                    {
                        "addresses": [{"ip": ip} for ip in ips],
                        "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
                    }
                ],
            }
        )
    if bundle:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": _meta(k, k["secret"]),
                "data": {SECRET_KEYS[w]: base64.b64encode(bundle[w]).decode() for w in ("ca", "cert", "key")},
            }
        )
    return docs
