{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.validate

# Before the first install only: is the data dir's disk fast enough for etcd?
etcd-install-disk-etcd_cluster-disk_checked:
  etcd_cluster.disk_checked:
    - name: {{ etcd.paths.data }}
    - require:
      - sls: {{ tplroot }}.validate

etcd-install-group-group-present:
  group.present:
    - name: {{ etcd.group }}
    - system: true
    - require:
      - etcd_cluster: etcd-install-disk-etcd_cluster-disk_checked

etcd-install-user-user-present:
  user.present:
    - name: {{ etcd.user }}
    - gid: {{ etcd.group }}
    - system: true
    - home: {{ etcd.paths.data }}
    - createhome: false
    - shell: /usr/sbin/nologin
    - require:
      - group: etcd-install-group-group-present

etcd-install-binaries-etcd_install-installed:
  etcd_install.installed:
    - name: {{ etcd.version }}
    - source: {{ etcd.source.url | yaml_dquote }}
    - checksums: {{ etcd.source.checksums | json }}
    - install_dir: {{ etcd.paths.install }}
    - bin_dir: {{ etcd.paths.bin }}
    - service: {{ etcd.service.name }}
    - require:
      - etcd_cluster: etcd-install-disk-etcd_cluster-disk_checked
