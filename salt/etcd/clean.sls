{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}
# Reverse chain, safe by default: stops and removes the service, unit and config of THIS
# node only. The data dir is kept (a member's data is never wiped by a state); remove it
# by hand once the member has been removed from the cluster (README: Scale in).

etcd-clean-service-dead-service-dead:
  service.dead:
    - name: {{ etcd.service.name }}
    - enable: false

etcd-clean-unit-file-absent:
  file.absent:
    - name: {{ etcd.paths.unit }}
    - require:
      - service: etcd-clean-service-dead-service-dead

etcd-clean-unit-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: etcd-clean-unit-file-absent

etcd-clean-config-file-absent:
  file.absent:
    - name: {{ etcd.paths.config_dir }}
    - require:
      - service: etcd-clean-service-dead-service-dead

{%- for binary in ['etcd', 'etcdctl', 'etcdutl'] %}

etcd-clean-link-{{ binary }}-file-absent:
  file.absent:
    - name: {{ etcd.paths.bin }}/{{ binary }}
    - require:
      - service: etcd-clean-service-dead-service-dead
{%- endfor %}

etcd-clean-releases-file-absent:
  file.absent:
    - name: {{ etcd.paths.install }}
    - require:
      - service: etcd-clean-service-dead-service-dead

etcd-clean-tls-file-absent:
  file.absent:
    - name: {{ etcd.tls.dir }}
    - require:
      - service: etcd-clean-service-dead-service-dead

etcd-clean-etcdctl-wrapper-file-absent:
  file.absent:
    - name: /usr/local/sbin/etcdctl
