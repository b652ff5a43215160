{#- Disaster recovery: every member restored from the same verified snapshot.
      salt-run state.orch etcd.orch.restore pillar='{"etcd": {"restore": {"cluster": "storageos", "snapshot": "latest"}}}'  # noqa: 206 (JSON, not Jinja)
    The plan (etcd_store.restore_plan, read-only) is made first, also with test=True,
    which prints it and changes nothing. It refuses when the snapshot's sha256 or cluster
    does not match its record, or when members of the cluster still serve (unless
    `force: true`). Then: alerts silenced, the snapshot sent to each member, every member
    restored at once (old data set aside, a new cluster token, new cluster ID recorded),
    the formula applied on every member (ends with the health gate), alerts back on. #}
{%- set r = salt['pillar.get']('etcd:restore', {}) %}
{%- set r = r if r is mapping else {} %}
{%- set plan = salt['saltutil.runner']('etcd_store.restore_plan', cluster=r.get('cluster'),
                                       snapshot=r.get('snapshot', 'latest'),
                                       force=r.get('force', False) is sameas true) %}
{%- if not plan.get('result') %}
etcd-orch-restore-plan-test-fail_without_changes:
  test.fail_without_changes:
    - name: {{ (plan.get('comment') or 'refused: the plan failed') | json }}
{%- elif opts.get('test') %}
etcd-orch-restore-plan-test-succeed_without_changes:
  test.succeed_without_changes:
    - name: {{ ('would ' ~ plan.comment ~ ', as a new cluster with token ' ~ plan.token
                ~ (' (stopping ' ~ plan.serving | join(', ') ~ ')' if plan.serving else '')) | json }}
{%- else %}
etcd-orch-restore-silence-salt-runner:
  salt.runner:
    - name: etcd_store.silence
    - cluster: {{ r.cluster }}
    - seconds: 1800

etcd-orch-restore-send-salt-runner:
  salt.runner:
    - name: etcd_store.send
    - cluster: {{ r.cluster }}
    - snapshot: {{ plan.snapshot }}
    - members: {{ plan.members | json }}
    - require:
      - salt: etcd-orch-restore-silence-salt-runner

# All members at once: a restored member waits for the others' quorum.
etcd-orch-restore-members-salt-function:
  salt.function:
    - name: etcd_backup.restore
    - tgt: {{ plan.members | json }}
    - tgt_type: list
    - arg:
      - {{ plan.snapshot }}
      - {{ plan.sha256 }}
      - {{ plan.token }}
    - timeout: 600
    - require:
      - salt: etcd-orch-restore-send-salt-runner

etcd-orch-restore-converge-salt-state:
  salt.state:
    - tgt: {{ plan.members | json }}
    - tgt_type: list
    - sls: etcd
    - require:
      - salt: etcd-orch-restore-members-salt-function

etcd-orch-restore-unsilence-salt-runner:
  salt.runner:
    - name: etcd_store.unsilence
    - cluster: {{ r.cluster }}
    - require:
      - salt: etcd-orch-restore-converge-salt-state
{%- endif %}
