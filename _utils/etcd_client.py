"""A small etcd v3 client over the JSON gateway (HTTP/1.1 + JSON), for Salt minions.

No etcd client library is needed on a minion: `requests` ships with Salt. Every call is
bounded by a timeout. The gateway omits zero-valued fields (no `isLearner: false`, no
`alarms` when there are none) and encodes int64 as strings; `_member` and `_status`
normalise that so callers see ints, bools and lists, always present.
"""

import base64

import requests


class EtcdError(Exception):
    """An endpoint did not answer, or answered with an error."""


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


class Client:
    """Talks to one or more endpoints; `endpoint=None` means "the first that answers"."""

    def __init__(self, endpoints, timeout=2.0, ca=None, cert=None, key=None):
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never through a proxy from the environment
        self.session.verify = ca if ca else True
        if cert and key:
            self.session.cert = (cert, key)

    def _request(self, method, path, body=None, endpoint=None, timeout=None):
        errors = []
        for ep in [endpoint] if endpoint else self.endpoints:
            try:
                resp = self.session.request(method, ep.rstrip("/") + path, json=body, timeout=timeout or self.timeout)
            except requests.RequestException as exc:
                errors.append(f"{ep}: {type(exc).__name__}")
                continue
            if resp.status_code != 200:
                errors.append(f"{ep}: HTTP {resp.status_code} {resp.text[:200].strip()}")
                continue
            try:
                return resp.json()
            except ValueError:
                errors.append(f"{ep}: not JSON")
        raise EtcdError("; ".join(errors) or "no endpoint")

    def post(self, path, body=None, endpoint=None, timeout=None):
        return self._request("POST", path, body or {}, endpoint, timeout)

    def member_list(self, endpoint=None):
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
        """GET /health: True when the member serves (it needs a leader to say so)."""
        try:
            data = self._request("GET", "/health", endpoint=endpoint)
        except EtcdError:
            return False
        return str(data.get("health")).lower() == "true"

    def version(self, endpoint):
        return self._request("GET", "/version", endpoint=endpoint)

    def put(self, key, value, endpoint=None):
        return self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, endpoint)

    def get(self, key, endpoint=None):
        kvs = self.post("/v3/kv/range", {"key": b64(key)}, endpoint).get("kvs", [])
        return unb64(kvs[0].get("value")) if kvs else None
