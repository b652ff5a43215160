"""State: the Kubernetes manifests for the external etcd cluster, written on one minion.

With TLS the file holds a Secret with a client bundle whose key was made on this minion:
the file is mode 0600 and its content never appears in a return.
"""

import os
import shutil
import subprocess
import sys

for _name in ("etcd_settings", "etcd_k8s", "etcd_tls"):
    sys.modules.pop(_name, None)

import etcd_k8s  # noqa: E402
import etcd_settings  # noqa: E402
import etcd_tls  # noqa: E402
import yaml  # noqa: E402

__virtualname__ = "etcd_kubernetes"


def __virtual__():
    return __virtualname__


def manifests(name, path=None):
    """
    Write the site's Service, EndpointSlice (and legacy Endpoints when asked) and, with
    TLS, the client-bundle Secret to ``kubernetes:manifest`` (or ``path``), mode 0600.
    With ``kubernetes:apply`` and kubectl on this minion, ``kubectl apply -f`` it when it
    changed.

    .. code-block:: yaml

        etcd-kubernetes:
          etcd_kubernetes.manifests:
            - name: etcd
    """
    s = __salt__["etcd_cluster.settings"]()
    k = s["kubernetes"]
    path = path or k["manifest"]
    ret = {"name": path, "result": True, "changes": {}, "comment": ""}
    test = __opts__["test"]
    bundle = None
    notes = []
    if etcd_settings.tls_on(s):
        if test and not os.path.exists(os.path.join(k["bundle_dir"], etcd_k8s.SECRET_KEYS["key"])):
            ret.update(result=None, comment=f"would make a client bundle in {k['bundle_dir']} and write {path}")
            return ret
        if not test:
            got = __salt__["etcd_tls.client_bundle"](k["bundle_dir"], cn=k["service"])
            if got["changed"]:
                notes.append(f"client bundle (re)issued in {k['bundle_dir']}")
        bundle = {}
        for what, fname in etcd_k8s.SECRET_KEYS.items():
            with open(os.path.join(k["bundle_dir"], fname), "rb") as fh:
                bundle[what] = fh.read()
    docs = etcd_k8s.manifests(s, bundle)
    text = "# Managed by Salt (etcd-formula). Holds a client key when TLS is on: keep it 0600.\n"
    text += yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
    current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    objects = [f"{d['kind']}/{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs]
    if current == text:
        ret["comment"] = f"{path} is current ({', '.join(objects)})"
        return ret
    if test:
        ret.update(result=None, comment=f"would write {path}: {', '.join(objects)}", changes={"objects": objects})
        return ret
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    etcd_tls.write_private(path, text.encode(), 0, 0, 0o600)
    ret["changes"] = {"written": path, "objects": objects}
    if k["apply"]:
        kubectl = shutil.which(k["kubectl"])
        if not kubectl:
            notes.append(f"kubernetes:apply is on but {k['kubectl']} is not on this minion: apply {path} by hand")
        else:
            cmd = [kubectl, "apply", "-f", path] + (["--kubeconfig", k["kubeconfig"]] if k["kubeconfig"] else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                ret.update(result=False, comment=f"kubectl apply failed: {proc.stderr.strip()[-500:]}")
                return ret
            ret["changes"]["kubectl"] = proc.stdout.strip().splitlines()
    ret["comment"] = "; ".join([f"wrote {path}", *notes])
    return ret
