{#- Replace a failed member (its disk or VM is gone; the node that replaces it has the same
    minion id and pillar entry, and an empty data dir):
      salt-run state.orch etcd.orch.replace_member pillar='{etcd_orch: {member: etcd3, via: etcd1}}'  # noqa: 206 (YAML flow mapping, not Jinja)
    1. remove the dead member through a healthy one (`via`), under the cluster lock; the
       quorum rule applies, min_members does not (the member comes straight back); a
       member that still serves is refused (it has not failed) unless `force: true`;
    2. on the replacement: stop etcd if it runs and set any old data dir aside;
    3. `state.apply etcd` on the replacement: it is added as a learner with an empty data
       dir, catches up, is promoted, and the apply waits until the cluster is healthy. #}
{%- from tpldir ~ "/args.jinja" import bad_args, refuse with context %}
{%- set member = salt['pillar.get']('etcd_orch:member') %}
{%- set via = salt['pillar.get']('etcd_orch:via') %}
{%- set force = salt['pillar.get']('etcd_orch:force', False) is sameas true %}
{%- set problem = bad_args([member, via]) if member and via else '' %}
{%- if not member or not via or member == via %}
etcd-orch-replace-arguments-test-fail_without_changes:
  test.fail_without_changes:
    - name: "name the failed member and a healthy one: pillar='{etcd_orch: {member: etcd3, via: etcd1}}'"  # noqa: 206 (YAML flow mapping, not Jinja)
{%- elif problem %}
{{ refuse('replace', problem, "'{etcd_orch: {member: etcd3, via: etcd1}}'") }}  # noqa: 206 (YAML flow mapping, not Jinja)
{%- else %}
etcd-orch-replace-remove-salt-function:
  salt.function:
    - name: etcd_membership.remove
    - tgt: {{ via }}
    - tgt_type: list
    - arg:
      - {{ member }}
    - kwarg:
        replace: true
        force: {{ force }}

etcd-orch-replace-set-aside-salt-function:
  salt.function:
    - name: etcd_membership.set_aside
    - tgt: {{ member }}
    - tgt_type: list
    - require:
      - salt: etcd-orch-replace-remove-salt-function

etcd-orch-replace-join-salt-state:
  salt.state:
    - tgt: {{ member }}
    - tgt_type: list
    - sls: etcd
    - require:
      - salt: etcd-orch-replace-set-aside-salt-function
{%- endif %}
