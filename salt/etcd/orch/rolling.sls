{#- Walk the members one at a time, for operators who prefer an explicit order:
      salt-run state.orch etcd.orch.rolling pillar='{etcd_orch: {members: [etcd1, etcd2, etcd3]}}'  # noqa: 206 (YAML flow mapping, not Jinja)
    Each member gets `state.apply etcd`: a needed restart goes through the same guarded
    path (cluster lock, health gate, leader hand-over), and the apply ends with the
    bounded health check, so a member that fails stops the walk before the next. #}
{%- from tpldir ~ "/walk.jinja" import walk with context %}
{{ walk('rolling', salt['pillar.get']('etcd_orch:members', []), '[etcd1, etcd2, etcd3]') }}
