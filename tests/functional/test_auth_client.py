"""The gateway client with etcd auth on, against a real etcd 3.5 (one member with mutual
TLS, simple tokens that expire after 2 s): groundwork of issue 21, measured here.

What etcd does, and what the formula must therefore do:
- the gateway never maps a client certificate's CN to a user (etcd PR #10366), and with
  `--client-cert-auth` and auth on it refuses every /v3 request whose certificate has a
  CN at all (HTTP 400, embed/serve.go), token or not: the formula's gateway calls need a
  client certificate without a CN, and a token;
- gRPC clients (etcdctl, the storage operator) are the user named by their certificate's
  CN, with no password."""

import sys
import time

import pytest

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_client  # noqa: E402

ROOT_PASSWORD = "r00t-Pw-for-the-test-only"
FORMULA_PASSWORD = "f0rmula-Pw-for-the-test-only"
CLIENTS = [("gateway", None), ("storageos", "storageos")]  # (file, CN)


@pytest.fixture
def member(tmp_path):
    from etcd_process import EtcdProcess

    m = EtcdProcess(tmp_path / "member", extra_args=["--auth-token=simple", "--auth-token-ttl=2"], clients=CLIENTS)
    yield m.start()
    m.stop()


@pytest.fixture
def auth_on(member):
    """root, the formula's user (prefix /etcd-formula/) and the storage operator's (prefix
    /storageos/) made first, then auth enabled, in the order issue 21 asks."""
    admin = member.client("admin")
    admin.user_add("root", ROOT_PASSWORD)
    admin.user_grant_role("root", "root")
    for user, prefix, password in (("formula", "/etcd-formula/", FORMULA_PASSWORD), ("storageos", "/storageos/", "")):
        admin.role_add(user)
        admin.role_grant_prefix(user, prefix)
        admin.user_add(user, password or "unused-the-cn-is-its-login")
        admin.user_grant_role(user, user)
    admin.put("/storageos/before", "written before auth")
    admin.auth_enable()
    return member


def test_a_certificate_with_a_cn_is_refused_by_the_gateway_even_with_a_token(auth_on):
    with pytest.raises(etcd_client.EtcdError, match="CommonName of client sending a request against gateway"):
        auth_on.client("admin", ("formula", FORMULA_PASSWORD)).get("/etcd-formula/x")


def test_without_a_token_every_call_is_refused(auth_on):
    with pytest.raises(etcd_client.EtcdError, match="HTTP 403 .*permission denied"):
        auth_on.client().put("/etcd-formula/x", "1")


def test_the_formulas_user_works_in_its_prefix_and_nowhere_else(auth_on):
    c = auth_on.client(credentials=("formula", FORMULA_PASSWORD))
    c.put("/etcd-formula/functional/probe", "ok")
    assert c.get("/etcd-formula/functional/probe") == "ok"
    with pytest.raises(etcd_client.EtcdError, match="permission denied"):
        c.get("/storageos/before")
    assert c.authentications == 1  # a denial of a valid token is final: no second login


def test_the_storage_operator_is_its_certificates_cn_over_grpc_and_kept_to_its_prefix(auth_on):
    read = auth_on.etcdctl("storageos", "get", "--print-value-only", "/storageos/before")
    assert read.returncode == 0 and read.stdout.strip() == "written before auth", read
    assert auth_on.etcdctl("storageos", "put", "/storageos/x", "1").returncode == 0
    for key in ("/etcd-formula/functional/lock", "/other/x"):
        refused = auth_on.etcdctl("storageos", "put", key, "taken")
        assert refused.returncode != 0 and "permission denied" in refused.stderr, refused


def test_an_expired_token_is_renewed_and_the_call_goes_through(auth_on):
    c = auth_on.client(credentials=("formula", FORMULA_PASSWORD))
    c.put("/etcd-formula/functional/a", "1")
    old = c._token
    assert c.authentications == 1
    time.sleep(3.5)  # past --auth-token-ttl=2
    # The old token itself is refused now: the renewal is needed, not a formality.
    probe = auth_on.client()
    probe._token = old
    status, text = probe.raw("POST", c.endpoints[0], "/v3/kv/range", {"key": etcd_client.b64("/etcd-formula/x")})
    assert status == 401 and "invalid auth token" in text, (status, text)
    assert c.get("/etcd-formula/functional/a") == "1"
    assert c.authentications == 2 and c._token != old


def test_a_wrong_password_is_refused_and_never_repeated(auth_on):
    wrong = "not-the-password-42"
    with pytest.raises(etcd_client.EtcdError) as raised:
        auth_on.client(credentials=("formula", wrong)).get("/etcd-formula/functional/a")
    assert "authentication as 'formula' failed" in str(raised.value)
    assert wrong not in str(raised.value)


def test_auth_disable_is_the_way_back(auth_on):
    c = auth_on.client(credentials=("root", ROOT_PASSWORD))
    c.auth_disable()
    assert auth_on.client("admin").get("/storageos/before") == "written before auth"
    later = auth_on.client(credentials=("formula", FORMULA_PASSWORD))  # credentials still configured
    assert later.get("/storageos/before") == "written before auth"  # no token needed, none asked
