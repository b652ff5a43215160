{#- Defragment a cluster now, one member at a time under the cluster lock, followers first,
    the leader after handing over, a health gate between members:
      salt-run state.orch etcd.orch.defrag pillar='{etcd_orch: {cluster: storageos}}'  # noqa: 206 (YAML flow mapping, not Jinja)
    `force: true` visits every member, not only those whose file is mostly free space. #}
{%- set cluster = salt['pillar.get']('etcd_orch:cluster') %}
{%- set force = salt['pillar.get']('etcd_orch:force', False) is sameas true %}
{%- if cluster is not string or cluster | regex_match('^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$') is none %}
etcd-orch-defrag-arguments-test-fail_without_changes:
  test.fail_without_changes:
    - name: "name the cluster: pillar='{etcd_orch: {cluster: storageos}}'"  # noqa: 206 (YAML flow mapping, not Jinja)
{%- else %}
etcd-orch-defrag-cluster-salt-runner:
  salt.runner:
    - name: etcd.defrag
    - cluster: {{ cluster }}
    - force: {{ force }}
{%- endif %}
