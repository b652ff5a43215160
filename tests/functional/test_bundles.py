"""A consumer's client bundle and its renewal job through Salt's real loaders, without a
CA minion: everything that must be refused or left alone before a CA is asked. Issuing and
renewing for real (the CA minion, the schedule, the Secret) is proven in the lab
(tests/integration/test_tls.py)."""

import os

ME = "functional"  # the functional minion's id


def site(tmp_path, bundles, **kubernetes):
    return {
        "etcd": {
            "cluster": {"name": "consumers"},
            "members": {"etcd1": {"address": "10.0.0.11"}},
            "tls": {"enabled": True, "ca_minion": "ca1", "bundle_minions": bundles},
            "kubernetes": dict({"bundle_dir": str(tmp_path / "k8s-bundle")}, **kubernetes),
        }
    }


def test_a_bad_bundle_setting_is_refused_before_anything_is_written(loaders, set_pillar, tmp_path):
    where = tmp_path / "app" / "etcd"
    set_pillar(site(tmp_path, {ME: {"cn": "app", "dir": str(where), "user": "No Such;User"}}))
    ret = loaders.states.etcd_tls.bundle(name=str(where))
    assert ret.result is False and "invalid pillar, nothing written" in ret.comment, ret
    assert "tls:bundle_minions:functional:user" in ret.comment and "not a user name" in ret.comment
    assert not where.exists()


def test_a_minion_not_listed_gets_no_bundle_and_its_job_does_nothing(loaders, set_pillar, tmp_path):
    set_pillar(site(tmp_path, {"app1": "app1"}))
    where = tmp_path / "etcd-client"
    ret = loaders.states.etcd_tls.bundle(name=str(where))
    assert ret.result is False and "may not hold a client bundle" in ret.comment and "bundle_minions" in ret.comment
    assert not where.exists()
    job = loaders.modules.etcd_tls.renew_bundle()
    assert job["result"] is True and job["renewed"] == {} and "no client bundle" in job["comment"], job
    secret = loaders.modules.etcd_kubernetes.renew_due()  # kubernetes:minion is not this one
    assert secret["result"] is True and secret["renewed"] == {} and "no Secret" in secret["comment"], secret


def test_test_mode_says_what_it_would_issue_and_writes_nothing(loaders, set_pillar, tmp_path):
    where = tmp_path / "app" / "etcd"
    set_pillar(site(tmp_path, {ME: {"cn": "app", "dir": str(where)}}))
    loaders.opts["test"] = True
    try:
        ret = loaders.states.etcd_tls.bundle(name=str(where))
    finally:
        loaders.opts["test"] = False
    assert ret.result is None and ret.comment.startswith(f"would issue the client bundle in {where} (app)"), ret
    assert not where.exists()


def test_nothing_to_renew_asks_no_ca(loaders, set_pillar, tmp_path):
    # No bundle there yet (or one outside its window): the job judges locally and stops.
    where = tmp_path / "app" / "etcd"
    set_pillar(site(tmp_path, {ME: {"cn": "app", "dir": str(where)}}, minion=ME))
    assert loaders.modules.etcd_tls.bundle_due(str(where)) == []
    job = loaders.modules.etcd_tls.renew_bundle()
    assert job["result"] is True and job["renewed"] == {} and "nothing inside its renewal window" in job["comment"]
    secret = loaders.modules.etcd_kubernetes.renew_due()
    assert secret["result"] is True and "nothing inside its renewal window" in secret["comment"], secret
    assert not os.path.exists(where)


def test_an_owner_missing_on_the_minion_is_refused_before_anything_is_written(loaders, set_pillar, tmp_path):
    where = tmp_path / "app" / "etcd"
    set_pillar(site(tmp_path, {ME: {"cn": "app", "dir": str(where), "user": "nosuchuser"}}))
    ret = loaders.states.etcd_tls.bundle(name=str(where))
    assert ret.result is False and "user 'nosuchuser' does not exist on functional" in ret.comment, ret
    assert "etcd:tls:bundle_minions:functional:user" in ret.comment
    assert not where.exists()
