{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.config

# Enabled for boot (enabling never starts or restarts anything), then started when it
# is not running. No `watch` on purpose: a watch would restart every member whose file
# changed at once and lose quorum. etcd_cluster.running starts a stopped member (safe
# bootstrap) and restarts a running one only through the guarded path.
etcd-service-running-etcd_cluster-running:
  etcd_cluster.running:
    - name: {{ etcd.service.name }}
    - enable: true
    - require:
      - sls: {{ tplroot }}.config
