"""A real etcd for the functional tier: one member as a plain process on 127.0.0.1.

No systemd and no node: the release binary from the lab's artifacts, unpacked under a
temporary root, with mutual TLS on both ports from certificates made here (a client CA
and a peer CA, as the formula's CA minion makes them), and the site pillar that
describes exactly this member. What needs systemd or several nodes stays in the lab.
"""

import datetime
import ipaddress
import socket
import subprocess
import tarfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.preflight import RELEASES

VERSION = "3.5.1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path, key):
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _cert(subject_cn, key, issuer=None, issuer_key=None, ca=False, eku=(), days=365):
    now = datetime.datetime.now(datetime.UTC)
    # No CN at all (subject O only): the one kind of client certificate etcd's gateway
    # accepts once auth is on (embed/serve.go refuses any other with HTTP 400).
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]
        if subject_cn
        else [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd-formula")]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if not ca:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_pki(tls_dir, days=365, clients=()):
    """The member's TLS dir as the formula lays it out (etcd_settings.TLS_FILES):
    client-ca, peer-ca, server, peer and admin certificates with their keys; `clients`:
    more client certificates, (file name, CN or None for none: the gateway pair)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    server_eku = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    client_eku = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    cns = {"server": "server", "peer": "peer", "admin": "root", **dict(clients)}
    for ca_name, leaves in (
        ("client-ca", (("server", server_eku), ("admin", client_eku), *((f, client_eku) for f, _ in clients))),
        ("peer-ca", (("peer", server_eku),)),
    ):
        ca_key = _key()
        ca_cert = _cert(ca_name, ca_key, ca=True, days=3650)
        (tls_dir / f"{ca_name}.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        for leaf, eku in leaves:
            key = _key()
            cert = _cert(cns[leaf], key, ca_cert, ca_key, eku=eku, days=days)
            (tls_dir / f"{leaf}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_key(tls_dir / f"{leaf}.key", key)


class EtcdProcess:
    """One TLS member named `name`, its files under `root`; `site()` is its pillar."""

    def __init__(self, root, name="functional", extra_args=(), clients=(), version=VERSION):
        self.root, self.name, self.extra_args = root, name, list(extra_args)
        # The gateway pair (no CN) as the CA minion issues it: the formula's own calls use it.
        self.clients = [("gateway", None), *(c for c in clients if c[0] != "gateway")]
        self.version = version
        self.client_port, self.peer_port = free_port(), free_port()
        self.tls_dir = root / "etc" / "etcd" / "pki"
        self.proc = None

    def site(self):
        paths = {
            "install": self.root / "opt",
            "bin": self.root / "bin",
            "config_dir": self.root / "etc" / "etcd",
            "data": self.root / "data",
            "unit": self.root / "etcd.service",
            "state": self.root / "state",
        }
        return {
            "etcd": {
                "cluster": {"name": "functional", "bootstrap": True},
                "members": {self.name: {"address": "127.0.0.1"}},
                "listen_localhost": False,
                "ports": {"client": self.client_port, "peer": self.peer_port},
                "version": self.version,
                "paths": {k: str(v) for k, v in paths.items()},
                "tuning": {"heartbeat_interval": 100, "election_timeout": 1000},
                "tls": {"enabled": True, "mode": "files", "dir": str(self.tls_dir)},
                # The member shares the CI machine's disk with the rest of the run: its WAL
                # fsync p99 crossed etcd's 10 ms guide there and made "ok" tests flaky. The
                # slow_disk rule itself is table-tested (tests/unit/test_health_verdicts.py).
                "health": {"schedule": False, "wal_fsync_p99_ms": 1000},
            }
        }

    def start(self):
        make_pki(self.tls_dir, clients=self.clients)
        bindir = self.root / "release"
        with tarfile.open(RELEASES / f"etcd-v{self.version}-linux-amd64.tar.gz") as tar:
            tar.extractall(bindir, filter="data")
        binary = next(bindir.rglob("etcd"))
        client = f"https://127.0.0.1:{self.client_port}"
        peer = f"https://127.0.0.1:{self.peer_port}"
        pki = self.tls_dir
        argv = [
            str(binary),
            f"--name={self.name}",
            f"--data-dir={self.root / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=100",
            "--election-timeout=1000",
            f"--cert-file={pki / 'server.crt'}",
            f"--key-file={pki / 'server.key'}",
            f"--trusted-ca-file={pki / 'client-ca.crt'}",
            "--client-cert-auth",
            f"--peer-cert-file={pki / 'peer.crt'}",
            f"--peer-key-file={pki / 'peer.key'}",
            f"--peer-trusted-ca-file={pki / 'peer-ca.crt'}",
            "--peer-client-cert-auth",
            *self.extra_args,
        ]
        self.log = open(self.root / "etcd.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {(self.root / 'etcd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.client_port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("etcd did not listen within 20 s")

    def client(self, cert="gateway", credentials=None):
        """A gateway client with the client certificate `cert` (a file stem in tls_dir)."""
        import etcd_client  # _utils is on sys.path once a test module put it there

        pki = self.tls_dir
        tls = (str(pki / "client-ca.crt"), str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
        return etcd_client.Client([f"https://127.0.0.1:{self.client_port}"], 3, *tls, credentials=credentials)

    def etcdctl(self, cert, *args):
        """etcdctl over gRPC as the user the certificate `cert`'s CN names."""
        pki = self.tls_dir
        argv = [
            str(next((self.root / "release").rglob("etcdctl"))), f"--endpoints=https://127.0.0.1:{self.client_port}",
            f"--cacert={pki / 'client-ca.crt'}", f"--cert={pki / cert}.crt", f"--key={pki / cert}.key", *args,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
