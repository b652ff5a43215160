{#- Scale out or in one member at a time, with a health gate between:
      salt-run state.orch etcd.orch.scale pillar='{etcd_orch: {members: [etcd4, etcd5]}}'  # noqa: 206 (YAML flow mapping, not Jinja)
    Change the site pillar first (add the new members, or drop the leaving ones), then
    name the nodes that change, in order: a new member is added as a learner and promoted,
    a leaving one is removed and retired; each apply ends when the cluster is healthy.
    A plain `salt 'etcd*' state.apply etcd` is just as safe (the cluster lock serialises
    the changes); this is for operators who want the order and a stop at the first failure. #}
{%- from tpldir ~ "/walk.jinja" import walk with context %}
{{ walk('scale', salt['pillar.get']('etcd_orch:members', []), '[etcd4, etcd5]') }}
