"""Which version changes a running cluster may take, and why not.

etcd supports upgrades one minor at a time (3.4 -> 3.5 -> 3.6) and patch steps; the
cluster version (the lowest member's minor, as the cluster agreed) only rises once every
member runs the new minor, and a downgrade is a separate, explicit procedure. So a
change is judged against the lowest running member version and the cluster version.
"""

import etcd_releases

# 3.5 -> 3.6: the 3.6 upgrade guide asks for a recent 3.5 first and for a data dir whose
# v2 store holds nothing but membership (3.6 drops it; --enable-v2 is gone).
MIN_35_FOR_36 = (3, 5, 20)
# 3.4 -> 3.5 with auth enabled: 3.5 releases before 3.5.5 could diverge on the auth
# revision after such an upgrade.
MIN_35_WITH_AUTH_FROM_34 = (3, 5, 5)


def judge(running_versions, cluster_version, target, auth_enabled=False, extra_flags=None):
    """None when allowed, else the reason (a sentence with the fix)."""
    want = etcd_releases.parse(target)
    versions = [etcd_releases.parse(v) for v in running_versions if etcd_releases.parse(v)]
    if not want or not versions:
        return None
    lowest = min(versions)
    cluster = etcd_releases.parse(cluster_version) if cluster_version else None  # /version says "3.5.0"
    base = min([lowest[:2]] + ([cluster[:2]] if cluster else []))
    if want < max(versions):
        return (
            f"{target} is older than the running {'.'.join(map(str, max(versions)))}: a downgrade is not a rolling "
            "upgrade (etcd's downgrade procedure, or restore a snapshot)"
        )
    if want[:2] > (base[0], base[1] + 1) or want[0] != base[0]:
        return (
            f"{target} skips a minor: the lowest member runs {'.'.join(map(str, lowest))} and the cluster version is "
            f"{cluster_version or '?'}; upgrade to {base[0]}.{base[1] + 1}.x first"
        )
    if want[:2] == (3, 6) and base == (3, 5):
        if lowest < MIN_35_FOR_36:
            need = ".".join(map(str, MIN_35_FOR_36))
            return f"3.5 -> 3.6 needs every member on {need} or newer first (lowest runs {'.'.join(map(str, lowest))})"
        if any(str(f).lstrip("-") == "enable-v2" for f in (extra_flags or {})):
            return "3.6 has no v2 API: remove `enable-v2` from etcd:extra_flags and check the v2 store is empty first"
    if want[:2] == (3, 5) and base == (3, 4) and auth_enabled and want < MIN_35_WITH_AUTH_FROM_34:
        need = ".".join(map(str, MIN_35_WITH_AUTH_FROM_34))
        return f"3.4 -> 3.5 with auth enabled needs 3.5 {need} or newer (auth revision fix); choose it as the target"
    return None
