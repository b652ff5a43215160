{#- The formula's systemd unit. Its own SLS because it must be in place before an OS
    package is installed (install.sls requires it with etcd:source:type package): Debian's
    etcd-server then finds our etcd.service in /etc, not only its own in /lib. The unit
    starts etcd only with this member's data or a first-start file, so nothing starts it
    early. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.validate

etcd-unit-file-managed:
  file.managed:
    - name: {{ etcd.paths.unit }}
    - source: salt://{{ tplroot }}/files/etcd.service.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        etcd: {{ etcd | json }}
    - require:
      - sls: {{ tplroot }}.validate

# A changed unit needs systemd to read it again (not a restart of etcd). Salt's service
# functions reload only when systemd flags the unit; a unit file replaced after an earlier
# one was removed is not flagged and then fails to load ("Device or resource busy").
etcd-unit-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: etcd-unit-file-managed
