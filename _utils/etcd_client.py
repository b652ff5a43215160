"""A small etcd v3 client over the JSON gateway (HTTP/1.1 + JSON), for Salt minions.

No etcd client library is needed on a minion: it speaks HTTP with the standard library's
`http.client` (a request costs about a tenth of the CPU `requests` spends, which matters
to the scheduled health check's ten parallel calls) and keeps connections alive per
endpoint. Every call is bounded by a timeout. The gateway omits zero-valued fields (no
`isLearner: false`, no `alarms` when there are none) and encodes int64 as strings;
`_member` and `_status` normalise that so callers see ints, bools and lists, always present.
"""

import base64
import http.client
import json
import os
import ssl
import threading
import urllib.parse

from salt.exceptions import CommandExecutionError


class EtcdError(CommandExecutionError):
    """An endpoint did not answer, or answered with an error. A CommandExecutionError, so
    an execution function that lets it through fails the way Salt reports a failed
    command (a message and a non-zero retcode, no traceback)."""


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text):
    return base64.b64decode(text or "").decode(errors="replace")


def member_hex(member_id):
    """etcdctl's spelling of a member ID."""
    return f"{int(member_id):x}"


def _member(raw):
    return {
        "id": int(raw.get("ID", 0)),
        "name": raw.get("name", ""),
        "peer_urls": list(raw.get("peerURLs", [])),
        "client_urls": list(raw.get("clientURLs", [])),
        "is_learner": bool(raw.get("isLearner", False)),
    }


def member_view(m):
    """A listed member as the formula's functions show it (IDs in hex)."""
    return {
        "id": member_hex(m["id"]),
        "name": m["name"],
        "peer_urls": m["peer_urls"],
        "client_urls": m["client_urls"],
        "is_learner": m["is_learner"],
        "started": bool(m["client_urls"]),
    }


def _status(raw):
    header = raw.get("header", {})
    return {
        "cluster_id": int(header.get("cluster_id", 0)),
        "member_id": int(header.get("member_id", 0)),
        "leader": int(raw.get("leader", 0)),
        "version": raw.get("version", ""),
        "db_size": int(raw.get("dbSize", 0)),
        "db_size_in_use": int(raw.get("dbSizeInUse", 0)),
        "raft_term": int(raw.get("raftTerm", 0)),
        "raft_index": int(raw.get("raftIndex", 0)),
        "raft_applied_index": int(raw.get("raftAppliedIndex", 0)),
        "is_learner": bool(raw.get("isLearner", False)),
        "errors": list(raw.get("errors", [])),
    }


AUTHENTICATE = "/v3/auth/authenticate"
AUTH_OFF = "authentication is not enabled"


def prefix_end(prefix):
    """The end of the key range of every key under `prefix` (etcd's range_end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _wants_token(status, text, sent):
    """An answer that asks for a (new) token: expired or unknown (401), or none `sent`
    while auth is on (auth turned on since: 3.5 answers 403 "permission denied" through
    the gateway, 3.4 400 "user name is empty"). A denial of a token is final."""
    if status == 401:
        return True
    return not sent and status in (400, 403) and ("user name is empty" in text or "permission denied" in text)


def _without(text, secret):
    """An error text with no trace of `secret` (a password never reaches a log)."""
    return text.replace(secret, "********") if secret else text


_CONTEXTS = {}


def _tls_context(ca, cert, key):
    """An SSL context per (files, their mtimes) in this process: loading the CA and the key
    pair costs more than a request, and a renewed certificate has a new mtime."""
    stamp = tuple(os.stat(p).st_mtime_ns if p else 0 for p in (ca, cert, key))
    ident = (ca, cert, key, stamp)
    ctx = _CONTEXTS.get(ident)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=ca)
        if cert and key:
            ctx.load_cert_chain(cert, key)
        _CONTEXTS.clear()  # one site per minion: keep only the current files' context
        _CONTEXTS[ident] = ctx
    return ctx


class Client:
    """Talks to one or more endpoints; `endpoint=None` means "the first that answers".

    Thread-safe: each request takes an idle connection to its endpoint, or opens one.
    """

    def __init__(self, endpoints, timeout=2.0, ca=None, cert=None, key=None, credentials=None):
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.timeout = timeout
        # (user, password) for a cluster with auth on: the gateway does not authenticate
        # by the certificate's CN (etcd PR #10366), so every call carries a token.
        self._credentials = credentials
        self._token = None
        self.authentications = 0
        self._tls = None
        if ca or cert:
            try:
                self._tls = _tls_context(ca, cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise EtcdError(
                    f"TLS client material unusable ({ca}, {cert}): {exc}; apply the etcd formula (tls) first"
                ) from exc
        self._idle = {}
        self._lock = threading.Lock()

    def _connection(self, endpoint, timeout, fresh=False):
        """(connection, reused): an idle keep-alive connection, or a new one."""
        with self._lock:
            idle = None if fresh else self._idle.get(endpoint)
            if idle:
                conn = idle.pop()
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn, True
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(
                url.hostname, url.port or 443, timeout=timeout, context=self._tls or ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
        return conn, False

    def _release(self, endpoint, conn):
        with self._lock:
            self._idle.setdefault(endpoint, []).append(conn)

    def raw(self, method, endpoint, path, body=None, timeout=None, until=None):
        """(status, text) of one request; raises EtcdError when the endpoint does not answer.

        A kept-alive connection the server closed meanwhile (a restarted member) fails on
        first use: that request is retried once on a new connection.
        """
        headers = {"Accept-Encoding": "identity"}
        if self._token and path != AUTHENTICATE:
            headers["Authorization"] = self._token
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        fresh = False
        while True:
            conn, reused = self._connection(endpoint, timeout or self.timeout, fresh)
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace") if until is None else _read_until(resp, until)
                break
            except (OSError, http.client.HTTPException) as exc:  # socket.timeout is an OSError
                conn.close()
                if reused and not isinstance(exc, TimeoutError):
                    fresh = True
                    continue
                raise EtcdError(f"{endpoint}: {type(exc).__name__}") from exc
        if resp.will_close or until is not None:
            conn.close()
        else:
            self._release(endpoint, conn)
        return resp.status, text

    def _request(self, method, path, body=None, endpoint=None, timeout=None):
        if self._credentials and self._token is None and path != AUTHENTICATE:
            self.authenticate(endpoint)
        errors = []
        for ep in [endpoint] if endpoint else self.endpoints:
            try:
                sent = bool(self._token)
                status, text = self.raw(method, ep.rstrip("/"), path, body, timeout)
                if self._credentials and path != AUTHENTICATE and _wants_token(status, text, sent):
                    # A simple token expires (300 s by default) or dies with a restart of
                    # the member that keeps it; auth may have been turned on since: a new
                    # token, and the call once more.
                    self.authenticate(ep)
                    status, text = self.raw(method, ep.rstrip("/"), path, body, timeout)
            except EtcdError as exc:
                errors.append(str(exc))
                continue
            if status != 200:
                errors.append(f"{ep}: HTTP {status} {text[:200].strip()}")
                continue
            try:
                return json.loads(text)
            except ValueError:
                errors.append(f"{ep}: not JSON")
        raise EtcdError("; ".join(errors) or "no endpoint")

    def authenticate(self, endpoint=None):
        """A token for the client's credentials (etcd's Authenticate): kept for the next
        calls. The password goes in the body only; no error names it."""
        user, password = self._credentials
        self._token = None
        try:
            answer = self._request("POST", AUTHENTICATE, {"name": user, "password": password}, endpoint)
        except EtcdError as exc:
            if AUTH_OFF in str(exc):  # auth disabled (the rollback): calls go without a token
                self._token = ""
                return None
            raise EtcdError(f"authentication as {user!r} failed: {_without(str(exc), password)}") from None
        self.authentications += 1
        self._token = answer.get("token") or ""
        return self._token or None

    def post(self, path, body=None, endpoint=None, timeout=None):
        return self._request("POST", path, body or {}, endpoint, timeout)

    def member_list(self, endpoint=None, current=False):
        """The members as the answering member knows them. etcd serves this from the
        member's own applied state, which can trail a membership change just committed
        through another member by a few milliseconds; `current` makes it as of now: a
        linearizable read on the same member first (etcd answers it only once it has
        applied everything committed before the read)."""
        if current:
            errors = []
            for ep in [endpoint] if endpoint else self.endpoints:
                try:
                    self.post("/v3/kv/range", {"key": b64("\0"), "keys_only": True, "limit": 1}, ep)
                    return self.member_list(ep)
                except EtcdError as exc:
                    errors.append(str(exc))
            raise EtcdError("; ".join(errors) or "no endpoint")
        raw = self.post("/v3/cluster/member/list", {}, endpoint)
        return {
            "cluster_id": int(raw.get("header", {}).get("cluster_id", 0)),
            "members": [_member(m) for m in raw.get("members", [])],
        }

    def status(self, endpoint):
        return _status(self.post("/v3/maintenance/status", {}, endpoint))

    def alarms(self, endpoint=None):
        raw = self.post("/v3/maintenance/alarm", {"action": "GET"}, endpoint)
        return [
            {"member_id": int(a.get("memberID", 0)), "alarm": a.get("alarm", "NONE")} for a in raw.get("alarms", [])
        ]

    def health(self, endpoint):
        """GET /health: True when the member serves a linearizable read (it needs a leader
        and quorum). Any alarm makes it false (3.4, 3.5): callers read alarms themselves."""
        try:
            data = self._request("GET", "/health", endpoint=endpoint)
        except EtcdError:
            return False
        return str(data.get("health")).lower() == "true"

    def metrics(self, endpoint, until=None):
        """The Prometheus text of /metrics (served on the client URLs).

        Families come sorted by name: `until` stops reading at the first sample line after
        it, which skips most of the 160 KB (grpc_server_* alone is over half).
        """
        status, text = self.raw("GET", endpoint.rstrip("/"), "/metrics", until=until)
        if status != 200:
            raise EtcdError(f"{endpoint}: HTTP {status}")
        return text

    def version(self, endpoint):
        return self._request("GET", "/version", endpoint=endpoint)

    def with_endpoints(self, endpoints):
        """The same identity (TLS material, credentials and token, timeout) towards other endpoints."""
        other = Client(endpoints, self.timeout, credentials=self._credentials)
        other._token = self._token
        other._tls = self._tls
        return other

    # Keys. `lease`: the key goes when the lease does.
    def put(self, key, value, endpoint=None, lease=None):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = lease
        return self.post("/v3/kv/put", body, endpoint)

    def get(self, key, endpoint=None):
        kv = self.get_kv(key, endpoint)
        return unb64(kv.get("value")) if kv else None

    def delete(self, key):
        """Delete `key`; how many keys went (0 or 1)."""
        return int(self.post("/v3/kv/deleterange", {"key": b64(key)}).get("deleted", 0))

    def get_kv(self, key, endpoint=None):
        """The key's record (value base64, lease, revisions) or None."""
        kvs = self.post("/v3/kv/range", {"key": b64(key)}, endpoint).get("kvs", [])
        return kvs[0] if kvs else None

    def create(self, key, value, lease=None):
        """Put `key` only if it does not exist (one transaction); whether it was put."""
        put = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = lease
        body = {
            "compare": [{"key": b64(key), "target": "CREATE", "create_revision": "0", "result": "EQUAL"}],
            "success": [{"request_put": put}],
            "failure": [],
        }
        return bool(self.post("/v3/kv/txn", body).get("succeeded"))

    # Leases.
    def lease_grant(self, ttl):
        return int(self.post("/v3/lease/grant", {"TTL": int(ttl)})["ID"])

    def lease_revoke(self, lease):
        self.post("/v3/lease/revoke", {"ID": lease})

    def lease_keepalive(self, lease):
        self.post("/v3/lease/keepalive", {"ID": lease})

    def lease_ttl(self, lease):
        """Seconds the lease has left (-1: gone)."""
        return int(self.post("/v3/lease/timetolive", {"ID": lease}).get("TTL", -1))

    # Membership, leadership, auth.
    def member_add(self, peer_urls, learner=False):
        return self.post("/v3/cluster/member/add", {"peerURLs": list(peer_urls), "isLearner": bool(learner)})

    def member_remove(self, member_id):
        return self.post("/v3/cluster/member/remove", {"ID": str(member_id)})

    def member_promote(self, member_id):
        return self.post("/v3/cluster/member/promote", {"ID": str(member_id)})

    def member_update(self, member_id, peer_urls):
        return self.post("/v3/cluster/member/update", {"ID": member_id, "peerURLs": list(peer_urls)})

    def transfer_leadership(self, target_id, endpoint):
        """Sent to the leader (`endpoint`): only the leader can hand over."""
        return self.post("/v3/maintenance/transfer-leadership", {"targetID": str(target_id)}, endpoint=endpoint)

    # Maintenance (etcd_maintenance): one member at a time, at that member's endpoint.
    def defragment(self, endpoint, timeout=300):
        """Defragment the member at `endpoint` (it blocks that member's writes meanwhile)."""
        return self._request("POST", "/v3/maintenance/defragment", {}, endpoint=endpoint, timeout=timeout)

    def compact(self, revision, physical=True):
        """Compact the keyspace's history up to `revision` (watchers of older revisions must re-list)."""
        return self.post("/v3/kv/compaction", {"revision": str(int(revision)), "physical": bool(physical)}, timeout=120)

    def alarm_disarm(self, member_id, alarm):
        body = {"action": "DEACTIVATE", "memberID": str(int(member_id)), "alarm": alarm}
        return self.post("/v3/maintenance/alarm", body)

    def revision(self, endpoint=None):
        """The keyspace's current revision."""
        return int(self.post("/v3/kv/range", {"key": b64("/"), "limit": 1}, endpoint)["header"]["revision"])

    def auth_status(self):
        """AuthStatus (etcd 3.5+ only; it goes through raft)."""
        return self.post("/v3/auth/status", {})

    # Users and roles (README: Security). Role permissions are key ranges: a prefix is
    # [prefix, prefix_end(prefix)).
    def user_get(self, name):
        return self.post("/v3/auth/user/get", {"name": name})

    def user_add(self, name, password=None):
        """A user with `password`, or (None) one that only a client certificate with its
        name as CN can be (etcd's no_password option)."""
        body = {"name": name, "password": password} if password else {"name": name, "options": {"no_password": True}}
        try:
            return self.post("/v3/auth/user/add", body)
        except EtcdError as exc:
            raise EtcdError(f"adding user {name!r} failed: {_without(str(exc), password or '')}") from None

    def user_list(self):
        return sorted(self.post("/v3/auth/user/list", {}).get("users", []))

    def role_list(self):
        return sorted(self.post("/v3/auth/role/list", {}).get("roles", []))

    def role_get(self, name):
        """The role's permissions as (key, range_end, PERMISSION) (the gateway leaves out
        permType for READ, its zero value)."""
        perms = self.post("/v3/auth/role/get", {"role": name}).get("perm", [])
        return sorted((unb64(p.get("key")), unb64(p.get("range_end")), p.get("permType", "READ")) for p in perms)

    def role_revoke(self, role, key, range_end):
        body = {"role": role, "key": b64(key), "range_end": b64(range_end)}
        return self.post("/v3/auth/role/revoke", body)

    def role_grant(self, role, key, range_end, perm):
        perm_body = {"permType": perm, "key": b64(key), "range_end": b64(range_end)}
        return self.post("/v3/auth/role/grant", {"name": role, "perm": perm_body})

    def count(self, key, range_end):
        """How many keys are in [key, range_end) ("\\0": to the end), and the first of them."""
        body = {"key": b64(key), "range_end": b64(range_end), "keys_only": True, "limit": 1}
        raw = self.post("/v3/kv/range", body)
        kvs = raw.get("kvs", [])
        return int(raw.get("count", 0)), (unb64(kvs[0]["key"]) if kvs else None)

    def role_add(self, name):
        return self.post("/v3/auth/role/add", {"name": name})

    def user_grant_role(self, user, role):
        return self.post("/v3/auth/user/grant", {"user": user, "role": role})

    def role_grant_prefix(self, role, prefix, perm="READWRITE"):
        return self.role_grant(role, prefix, prefix_end(prefix), perm)

    def auth_enable(self):
        return self.post("/v3/auth/enable", {})

    def auth_disable(self):
        return self.post("/v3/auth/disable", {})

    def get_prefix(self, prefix, keys_only=False, endpoint=None):
        """{key after the prefix: value} for every key under `prefix`."""
        body = {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "keys_only": keys_only}
        kvs = self.post("/v3/kv/range", body, endpoint).get("kvs", [])
        return {unb64(kv["key"])[len(prefix) :]: unb64(kv.get("value")) for kv in kvs}


def _read_until(resp, until):
    """Read lines of a response until a sample line sorts after `until`."""
    lines = []
    for raw in resp:
        line = raw.decode(errors="replace").rstrip("\n")
        if line > until and not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)
