{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.config

# Enabled for boot; enabling never starts or restarts anything.
etcd-service-enabled-service-enabled:
  service.enabled:
    - name: {{ etcd.service.name }}
    - require:
      - sls: {{ tplroot }}.config

# No `watch` on purpose: a watch would restart every member whose file changed at once
# and lose quorum. etcd_cluster.running starts a stopped member (safe bootstrap) and
# reports "restart pending" for a running one.
etcd-service-running-etcd_cluster-running:
  etcd_cluster.running:
    - name: {{ etcd.service.name }}
    - require:
      - service: etcd-service-enabled-service-enabled
