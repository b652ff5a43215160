{%- set tplroot = tpldir.split('/')[0] %}

include:
  - {{ tplroot }}.service

etcd-health-cluster-etcd_cluster-healthy:
  etcd_cluster.healthy:
    - name: etcd
    - require:
      - sls: {{ tplroot }}.service
