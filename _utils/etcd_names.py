"""Names and paths from pillar, checked by type and pattern before they reach a file,
a tag, a key in etcd or a command (the trust rule for untrusted input)."""

import os
import re

# Names that reach files, tags, keys in etcd and commands: checked by pattern first.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # cluster names, tokens, minion ids
CN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # a client certificate's CN (an etcd user, later)
POSIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # a systemd unit name, without .service
FQDN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# Directories the formula writes into or may delete: never a system directory itself.
OWN_DIRS = (
    "paths:install", "paths:config_dir", "paths:data", "paths:state", "tls:dir", "tls:ca_dir",
    "upgrade:snapshot_dir", "kubernetes:bundle_dir", "backup:dir",
)  # fmt: skip
OTHER_PATHS = ("paths:bin", "paths:unit", "kubernetes:manifest")
SYSTEM_DIRS = {
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin",
    "/usr/local/sbin", "/usr/sbin", "/usr/share", "/var", "/var/cache", "/var/lib", "/var/log", "/var/run",
    "/var/tmp", "/etc/systemd", "/etc/systemd/system",
}  # fmt: skip


def path_problem(value, own):
    """(what is wrong, the fix) for a path, or None. `own`: a directory the formula writes
    into or may delete, which is never a system directory nor one component long."""
    if not isinstance(value, str) or not value:
        return "is not a path", "give an absolute path, e.g. /var/lib/etcd"
    if not value.startswith("/"):
        return f"{value!r} is not an absolute path", "start it with /"
    if CONTROL.search(value):
        return f"{value!r} contains a control character", "one line of text"
    if ".." in value.split("/") or os.path.normpath(value) != value:
        return f"{value!r} is not a normalised path", f"write it as {os.path.normpath(value)!r}, without .. or //"
    if own and (value in SYSTEM_DIRS or value.count("/") < 2):
        return (
            f"{value} is a system directory or too short: the formula writes into it and may delete it",
            "use a directory of its own with at least two components, e.g. /var/lib/etcd",
        )
    return None


CONTROL = re.compile(r"[\x00-\x1f\x7f]")
