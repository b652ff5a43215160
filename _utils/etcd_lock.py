"""One cluster-wide lock held in etcd itself, for everything that must happen one member
at a time: guarded restarts (etcd_rolling), membership changes (etcd_membership), and
operators' maintenance (etcd_lock.lock / unlock: defragmentation, OS updates).

The lock is a key bound to a lease: if its holder dies, the lease expires and the key
goes with it. Taking it is one transaction (create the key only if it does not exist).
While the holder's own member restarts, a keepalive thread renews the lease through the
other members. Releasing revokes the lease. A marker key records a restart that never
came back, so that later applies stop instead of restarting another member.
"""

import json
import socket
import threading
import time

import etcd_client
import etcd_keys


def min_ttl(election_timeout_ms, wanted):
    """etcd raises a TTL below 1.5 election timeouts (minLeaseTTL): ask for at least that."""
    return max(int(wanted), int(election_timeout_ms * 1.5 / 1000) + 1)


class LockTimeout(Exception):
    """Somebody else held the lock for longer than we were willing to wait."""


class Lock:
    """`with Lock(client, cluster, holder, ttl):` ... the lease is revoked on exit."""

    def __init__(self, client, cluster, holder, ttl=60, wait=300.0, purpose="restart"):
        self.client = client
        self.key = etcd_keys.lock(cluster)
        self.holder = holder
        self.ttl = int(ttl)
        self.wait = float(wait)
        self.purpose = purpose
        self.lease = None
        self._stop = threading.Event()
        self._thread = None
        self.keepalive_errors = 0

    def holder_info(self):
        raw = self.client.get(self.key)
        return json.loads(raw) if raw else None

    def acquire(self):
        deadline = time.monotonic() + self.wait
        value = json.dumps(
            {"holder": self.holder, "purpose": self.purpose, "since": time.time(), "host": socket.gethostname()}
        )
        while True:
            lease = self.client.lease_grant(self.ttl)
            if self.client.create(self.key, value, lease):
                self.lease = lease
                return self
            self._revoke(lease)
            if time.monotonic() > deadline:
                raise LockTimeout(f"lock {self.key} held by {self.holder_info()} for over {self.wait:.0f}s")
            time.sleep(0.5)

    def _revoke(self, lease):
        try:
            self.client.lease_revoke(lease)
        except etcd_client.EtcdError:
            pass  # it expires on its own

    def keepalive(self, endpoints, interval=None):
        """Renew the lease in the background through `endpoints` (the other members)."""
        interval = interval or max(1.0, self.ttl / 3)
        keeper = self.client.with_endpoints(endpoints)

        def run():
            while not self._stop.wait(interval):
                try:
                    keeper.lease_keepalive(self.lease)
                except etcd_client.EtcdError:
                    self.keepalive_errors += 1

        self._thread = threading.Thread(target=run, name="etcd-lock-keepalive", daemon=True)
        self._thread.start()

    def release(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.lease is not None:
            self._revoke(self.lease)
            self.lease = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


class Pending:
    """`with Pending(client, cluster, member, why, ttl):` a member that waits for the lock
    to restart says so (`restart-pending/<member>`, on a lease of its own), so the leader,
    which restarts last, lets it through first; the key goes when the block ends (the
    lease is revoked) or when the waiter dies (the lease, `ttl` short and renewed every
    third of it while the block runs, expires). A long lease outlived a crashed waiter:
    the leader then waited out lock_wait (180 s in the fault catalogue) for a member that
    was gone. A member whose endpoints change meanwhile (a move to TLS) sets `client` to
    a fresh one."""

    def __init__(self, client, cluster, member, why, ttl):
        self.client = client
        self.key = etcd_keys.pending(cluster, member)
        self.why = why
        self.ttl = int(ttl)
        self.lease = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.lease = self.client.lease_grant(self.ttl)
        self.client.put(self.key, self.why, lease=self.lease)
        self._thread = threading.Thread(target=self._renew, name="etcd-pending-keepalive", daemon=True)
        self._thread.start()
        return self

    def _renew(self):
        while not self._stop.wait(max(1.0, self.ttl / 3)):
            try:
                self.client.lease_keepalive(self.lease)
            except etcd_client.EtcdError:
                pass  # e.g. this member restarting: the next round, or expiry, settles it

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.client.lease_revoke(self.lease)
        except etcd_client.EtcdError:
            pass  # it expires on its own
        return False


def pending(client, cluster):
    """Members that announced a restart they still want (their keys live on a lease)."""
    return sorted(client.get_prefix(etcd_keys.pending_prefix(cluster), keys_only=True))


def holder(client, cluster):
    """The lock's holder record plus its lease and seconds left, or None when free."""
    kv = client.get_kv(etcd_keys.lock(cluster))
    if not kv:
        return None
    try:
        info = json.loads(etcd_client.unb64(kv.get("value")))
    except ValueError:
        info = {"holder": None}
    info["lease"] = int(kv.get("lease", 0))
    if info["lease"]:
        try:
            info["ttl_left"] = client.lease_ttl(info["lease"])
        except etcd_client.EtcdError:
            info["ttl_left"] = None
    return info
