{#- etcd-formula: validate -> install -> tls -> config -> service -> health, backup, maintenance.
    Each SLS requires the previous one, so an invalid pillar stops everything at the first
    state, before anything on the node changes. A minion that is no longer a member but
    still runs etcd (or holds its data) gets validate -> leave instead. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}
include:
  - .validate
{%- if grains['id'] in etcd.members %}
  - .install
  - .tls
  - .config
  - .service
  - .health
  - .backup
  - .maintenance
{%- else %}
  - .leave
{%- endif %}
