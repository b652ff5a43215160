"""State: the Kubernetes manifests for the external etcd cluster, written on one minion.

With TLS the file holds a Secret with a client bundle whose key was made on this minion:
the file is mode 0600 and its content never appears in a return.
"""

import os
import shutil
import subprocess

import etcd_fresh
import yaml

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_k8s, etcd_node, etcd_settings, etcd_tls) = etcd_fresh.load("etcd_k8s", "etcd_node", "etcd_settings", "etcd_tls")

__virtualname__ = "etcd_kubernetes"
# Beside the manifest: the sha256 of the content kubectl last applied without error.
APPLIED = ".applied"


def __virtual__():
    return __virtualname__


def manifests(name, path=None):  # noqa: PLR0912, PLR0915 (issue 17: file, bundle and kubectl steps, to split)
    """
    Write the site's Service, EndpointSlice(s) (and legacy Endpoints when asked) and, with
    TLS, the client-bundle Secret to ``kubernetes:manifest`` (or ``path``), mode 0600, on
    the minion named in ``kubernetes:minion`` (refused elsewhere). With
    ``kubernetes:apply`` and kubectl on this minion, ``kubectl apply -f`` it until
    kubectl has applied this very content once: a failed apply, or kubectl installed
    later, is retried by the next run.

    .. code-block:: yaml

        etcd-kubernetes:
          etcd_kubernetes.manifests:
            - name: etcd
    """
    s = __salt__["etcd_cluster.settings"]()
    k = s["kubernetes"]
    path = path or k["manifest"]
    ret = {"name": path, "result": True, "changes": {}, "comment": ""}
    me = __opts__["id"]
    if k["minion"] and k["minion"] != me:
        ret.update(
            result=False,
            comment=f"etcd:kubernetes:minion is {k['minion']}, not {me}: apply etcd.kubernetes on {k['minion']},"
            f" or name {me} there",
        )
        return ret
    report = __salt__["etcd_cluster.validate"](member=False)
    if not report["valid"]:
        errors = "; ".join(f"{e['key']}: {e['message']} ({e['fix']})" for e in report["errors"])
        ret.update(result=False, comment=f"invalid pillar, nothing written: {errors}")
        return ret
    test = __opts__["test"]
    bundle = None
    notes = []
    if etcd_settings.tls_on(s):
        if test and not os.path.exists(os.path.join(k["bundle_dir"], etcd_k8s.SECRET_KEYS["key"])):
            ret.update(result=None, comment=f"would make a client bundle in {k['bundle_dir']} and write {path}")
            return ret
        if not test:
            got = __salt__["etcd_tls.client_bundle"](k["bundle_dir"])  # the CN pillar pins for this minion
            if got["changed"]:
                notes.append(f"client bundle (re)issued in {k['bundle_dir']}")
        bundle = {}
        for what, fname in etcd_k8s.SECRET_KEYS.items():
            with open(os.path.join(k["bundle_dir"], fname), "rb") as fh:
                bundle[what] = fh.read()
    docs = etcd_k8s.manifests(s, bundle)
    text = "# Managed by Salt (etcd-formula). Holds a client key when TLS is on: keep it 0600.\n"
    text += yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
    digest = etcd_node.sha256_text(text)
    current = etcd_node.read_text(path) == text
    kubectl = shutil.which(k["kubectl"]) if k["apply"] else None
    applied = etcd_node.read_text(path + APPLIED) == digest
    objects = [f"{d['kind']}/{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs]
    if k["apply"] and not kubectl and not applied:
        notes.append(f"kubernetes:apply is on but {k['kubectl']} is not on this minion: apply {path} by hand")
    if current and (applied or not kubectl):
        ret["comment"] = "; ".join([f"{path} is current ({', '.join(objects)})", *notes])
        return ret
    if test:
        what = [] if current else [f"write {path}: {', '.join(objects)}"]
        what += ["kubectl apply it"] if kubectl else []
        ret.update(result=None, comment="would " + " and ".join(what), changes={"objects": objects})
        return ret
    if not current:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        etcd_tls.write_private(path, text.encode(), 0, 0, 0o600)
        ret["changes"] = {"written": path, "objects": objects}
        notes.insert(0, f"wrote {path}")
    if kubectl:
        cmd = [kubectl, "apply", "-f", path] + (["--kubeconfig", k["kubeconfig"]] if k["kubeconfig"] else [])
        # No stdin: kubectl asks for a user name when the kubeconfig has no credentials.
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False
            )
            error = None if proc.returncode == 0 else (proc.stderr.strip() or proc.stdout.strip())[-500:]
        except subprocess.TimeoutExpired:
            error = "no answer within 120 s"
        if error is not None:
            ret.update(
                result=False, comment="; ".join([*notes, f"kubectl apply failed (the next run retries): {error}"])
            )
            return ret
        etcd_tls.write_private(path + APPLIED, digest.encode(), 0, 0, 0o600)
        ret["changes"]["kubectl"] = proc.stdout.strip().splitlines()
    ret["comment"] = "; ".join(notes)
    return ret
