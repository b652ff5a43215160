"""A continuous writer for lab tests and benchmarks of changes that must lose no
acknowledged write, and the check that none was lost."""

import json
import sys
import threading
import time

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_client  # noqa: E402

MEMBERS = ["etcd1", "etcd2", "etcd3"]


class Traffic:
    """20 writes/s rotating over the members (300 ms per request), and every 100 ms
    whether each member's process serves (/version, 90 ms)."""

    def __init__(self, urls, tag, tls=None):
        """`tls`: (ca, cert, key) files of a client bundle, for https URLs."""
        self.urls, self.tag, self.tls = urls, tag, tuple(tls or ())
        self.acked, self.samples = [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write), threading.Thread(target=self._sample)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    def _write(self):
        c = etcd_client.Client(self.urls, 0.3, *self.tls)
        i = 0
        while not self._stop.is_set():
            key = f"/roll/{self.tag}/{i:06d}"
            try:
                c.put(key, str(i), endpoint=self.urls[i % len(self.urls)])
                self.acked.append((key, time.monotonic()))
            except etcd_client.EtcdError:
                pass
            i += 1
            self._stop.wait(0.05)

    def _sample(self):
        c = etcd_client.Client(self.urls, 0.09, *self.tls)
        while not self._stop.is_set():
            row = []
            for url in self.urls:
                try:
                    c.version(url)
                    row.append(True)
                except etcd_client.EtcdError:
                    row.append(False)
            self.samples.append(row)
            self._stop.wait(0.1)

    def longest_gap(self):
        times = [t for _, t in self.acked]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def worst_sample(self):
        return max((row.count(False) for row in self.samples), default=0)


def urls(lab, names=MEMBERS, scheme="http"):
    return [f"{scheme}://{lab.ip(n)}:2379" for n in names]


def assert_no_loss(lab, traffic, names=MEMBERS):
    """Every acknowledged write is stored, and the members `names` agree on the data
    (etcdctl's `endpoint hashkv` at one revision, run on the first of them)."""
    scheme = traffic.urls[0].split("://")[0]
    c = etcd_client.Client(urls(lab, names, scheme), 2, *traffic.tls)
    start = f"/roll/{traffic.tag}/"
    stored = set(c.get_prefix(start, keys_only=True))
    lost = [k for k, _ in traffic.acked if k[len(start) :] not in stored]
    assert traffic.acked and not lost, f"{len(lost)} acknowledged writes lost of {len(traffic.acked)}"
    # The gateway maps Hash and HashKV to one path: ask etcdctl for the members' hashkv.
    rev = int(c.post("/v3/kv/range", {"key": etcd_client.b64("/")})["header"]["revision"])
    eps = ",".join(urls(lab, names, scheme))
    # Endpoints through the environment: the TLS wrapper sets ETCDCTL_ENDPOINTS, and etcdctl
    # refuses a flag that shadows it.
    proc = lab.exec(
        names[0], "env", f"ETCDCTL_ENDPOINTS={eps}", "etcdctl", "endpoint", "hashkv", f"--rev={rev}", "-w", "json"
    )
    assert proc.returncode == 0, proc.stderr
    hashkv = {e["Endpoint"]: e["HashKV"]["hash"] for e in json.loads(proc.stdout)}
    assert len(hashkv) == len(names) and len(set(hashkv.values())) == 1, hashkv
    return len(traffic.acked)
