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


def renew_due():
    """
    The scheduled renewal of the Kubernetes Secret's client bundle (the
    ``etcd-kubernetes-renew`` job that ``etcd.kubernetes`` installs on
    ``kubernetes:minion``): when the bundle in ``kubernetes:bundle_dir`` is inside
    ``tls:renew_days``, expired or not valid yet, the manifests state runs alone
    (``state.single etcd_kubernetes.manifests``: the bundle reissued, the Secret
    rewritten, and applied with ``kubectl`` when ``kubernetes:apply`` is on), and
    ``etcd/<cluster>/tls/renewed`` (secret, serial, days left) or ``.../renew_failed``
    goes to the master. Judged locally first: the CA minion is asked only when due.

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_kubernetes.renew_due
    """
    s = __salt__["etcd_cluster.settings"]()
    k = s["kubernetes"]
    if not etcd_settings.tls_on(s) or s["tls"]["mode"] != "ca_minion" or k["minion"] != __opts__["id"]:
        return {"result": True, "renewed": {}, "comment": "no Secret with a client bundle is written here"}
    due = __salt__["etcd_tls.bundle_due"](k["bundle_dir"])
    if not due:
        return {"result": True, "renewed": {}, "comment": f"{k['bundle_dir']}: nothing inside its renewal window"}
    got = __salt__["state.single"]("etcd_kubernetes.manifests", "etcd")
    ran = next(iter(got.values()), None) if isinstance(got, dict) else None
    if not isinstance(ran, dict):  # a list of strings: e.g. an apply holds the state run lock
        out = {"result": False, "renewed": {}, "comment": f"not run: {'; '.join(map(str, got))}"}
    else:
        status = __salt__["etcd_tls.bundle_facts"](k["bundle_dir"])
        out = {"result": bool(ran["result"]), "renewed": {"secret": status["serial"]}, "comment": ran["comment"]}
        out["days_left"] = status["days_left"]
    out.update(due=due, secret=k["manifest"], bundle=k["bundle_dir"], minion=__opts__["id"])
    what = "renewed" if out["result"] else "renew_failed"
    __salt__["event.send"](f"etcd/{s['cluster']['name']}/tls/{what}", out)
    return out
