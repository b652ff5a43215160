{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}
{%- from tplroot ~ "/marker.jinja" import marker %}

include:
  - {{ tplroot }}.validate
{%- if etcd.source.type == 'package' %}
  - {{ tplroot }}.unit
{%- endif %}

# Before the first install only: is the data dir's disk fast enough for etcd?
etcd-install-disk-etcd_install-disk_checked:
  etcd_install.disk_checked:
    - name: {{ etcd.paths.data }}
    - require:
      - sls: {{ tplroot }}.validate

# The system user etcd runs as, and its group (Salt's group.present and user.present,
# behind a check of the passwd and group databases that costs nothing on re-runs).
etcd-install-account-etcd_install-account:
  etcd_install.account:
    - name: {{ etcd.user }}
    - group: {{ etcd.group }}
    - home: {{ etcd.paths.data }}
    - shell: /usr/sbin/nologin
    - require:
      - etcd_install: etcd-install-disk-etcd_install-disk_checked

{%- if etcd.source.type == 'package' %}

# From the OS's packages, pinned and held; the formula's unit first (unit.sls says why).
etcd-install-packages-etcd_install-packages_installed:
  etcd_install.packages_installed:
    - name: {{ etcd.version }}
    - packages: {{ etcd.source.packages | json }}
    - package_version: {{ etcd.source.package_version | yaml_dquote }}
    - service: {{ etcd.service.name }}
    - bin_dir: {{ etcd.paths.bin }}
    - refresh: {{ etcd.source.refresh }}
    - require:
      - etcd_install: etcd-install-account-etcd_install-account
      - module: etcd-unit-module-run
{%- else %}

etcd-install-binaries-etcd_install-installed:
  etcd_install.installed:
    - name: {{ etcd.version }}
    - source: {{ etcd.source.url | yaml_dquote }}
    - checksums: {{ etcd.source.checksums | json }}
    - install_dir: {{ etcd.paths.install }}
    - bin_dir: {{ etcd.paths.bin }}
    - service: {{ etcd.service.name }}
    - require:
      - etcd_install: etcd-install-disk-etcd_install-disk_checked
{{ marker('etcd-install-marker-file-managed', etcd.paths.install,
          'etcd_install: etcd-install-binaries-etcd_install-installed') }}
{%- endif %}
