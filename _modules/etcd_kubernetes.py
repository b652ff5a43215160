"""What the storage operator in Kubernetes needs to find this etcd: its ``kvBackend``
address and the objects (Service, EndpointSlice, Endpoints, the client-bundle Secret's
shape) that ``etcd_kubernetes.manifests`` (the state) writes and applies."""

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_k8s, etcd_settings) = etcd_fresh.load("etcd_k8s", "etcd_settings")

__virtualname__ = "etcd_kubernetes"


def __virtual__():
    return __virtualname__


def kv_backend_address():
    """
    The storage operator's ``kvBackend.address`` for this site: every member's client
    URL, comma-separated (https with TLS).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_kubernetes.kv_backend_address
    """
    return etcd_k8s.kv_backend_address(__salt__["etcd_cluster.settings"]())


def manifests(with_secret=False):
    """
    The Kubernetes objects for this site (Service without selector, EndpointSlice, and
    the legacy Endpoints when ``kubernetes:legacy_endpoints``). The Secret with the
    client bundle is only ever written to a file by ``etcd_kubernetes.manifests``; here
    ``with_secret`` shows its name and keys, never its data.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_kubernetes.manifests
    """
    docs = etcd_k8s.manifests(__salt__["etcd_cluster.settings"]())
    if with_secret and etcd_settings.tls_on(__salt__["etcd_cluster.settings"]()):
        k = __salt__["etcd_cluster.settings"]()["kubernetes"]
        docs.append({"kind": "Secret", "name": k["secret"], "keys": sorted(etcd_k8s.SECRET_KEYS.values())})
    return docs
