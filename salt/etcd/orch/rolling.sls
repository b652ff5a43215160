{#- Walk the members one at a time, for operators who prefer an explicit order:
      salt-run state.orch etcd.orch.rolling pillar='etcd_orch: {members: [etcd1, etcd2, etcd3]}'
    Each member gets `state.apply etcd`: a needed restart goes through the same guarded
    path (cluster lock, health gate, leader hand-over), and the apply ends with the
    bounded health check, so a member that fails stops the walk before the next. #}
{%- set members = salt['pillar.get']('etcd_orch:members', []) %}
{%- if not members %}
etcd-orch-rolling-members-test-fail_without_changes:
  test.fail_without_changes:
    - name: "name the members: pillar='etcd_orch: {members: [etcd1, etcd2, etcd3]}'"
{%- endif %}
{%- for member in members %}

etcd-orch-rolling-{{ member }}-salt-state:
  salt.state:
    - tgt: {{ member }}
    - sls: etcd
  {%- if not loop.first %}
    - require:
      - salt: etcd-orch-rolling-{{ loop.previtem }}-salt-state
  {%- endif %}
{%- endfor %}
