{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.validate
  - {{ tplroot }}.service

# Every member runs the maintenance job; what it does to the cluster it does under the
# cluster lock, one member at a time (README: Defragmentation and alarms).
{%- if etcd.maintenance.schedule %}
etcd-maintenance-schedule-etcd_health-scheduled:
  etcd_health.scheduled:
    - name: etcd-maintenance
    - function: etcd_maintenance.scheduled
    - seconds: {{ etcd.maintenance.interval }}
    - splay: {{ [etcd.maintenance.interval // 10, 30] | min }}
    - enabled: {{ etcd.maintenance.enabled }}
    - maxrunning: 1
    - return_job: false
    - persist: true
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - sls: {{ tplroot }}.service
{%- else %}
etcd-maintenance-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-maintenance
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    # Removing the job needs no running etcd, only a valid pillar.
    - require:
      - sls: {{ tplroot }}.validate
{%- endif %}
