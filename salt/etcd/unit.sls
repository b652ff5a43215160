{#- The formula's systemd unit. Its own SLS because it must be in place before an OS
    package is installed (install.sls requires it with etcd:source:type package): Debian's
    etcd-server then finds our etcd.service in /etc, not only its own in /lib. The unit
    starts etcd only with this member's data or a first-start file, so nothing starts it
    early. unit.sls and install.sls include each other (Salt includes each SLS once). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.validate
  - {{ tplroot }}.install

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
    # Never before the checks that may refuse the install (the disk preflight): a refused
    # install leaves the node as it was. With packages only those checks and the account
    # come first (the package requires this unit); with the tarball, the whole install.
    - require:
{%- if etcd.source.type == 'package' %}
      - etcd_install: etcd-install-account-etcd_install-account
{%- else %}
      - sls: {{ tplroot }}.install
{%- endif %}

# A changed unit needs systemd to read it again (not a restart of etcd). Salt's service
# functions reload only when systemd flags the unit; a unit file replaced after an earlier
# one was removed is not flagged and then fails to load ("Device or resource busy").
etcd-unit-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: etcd-unit-file-managed
