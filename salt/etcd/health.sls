{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.validate
  - {{ tplroot }}.service

etcd-health-cluster-etcd_health-healthy:
  etcd_health.healthy:
    - name: etcd
    - require:
      - sls: {{ tplroot }}.service

# The scheduled check needs the service, not a healthy cluster: an unhealthy cluster is
# exactly when its events matter. Masterless (no minion daemon to ask) writes the job
# to the minion's configuration instead of asking the daemon. etcd_health.scheduled is
# schedule.present that asks the daemon only when the job is not already as wanted.
{%- if etcd.health.schedule %}
etcd-health-schedule-etcd_health-scheduled:
  etcd_health.scheduled:
    - name: etcd-health
    - function: etcd_health.health
    - job_kwargs: {event: true}
    - seconds: {{ etcd.health.interval }}
    - splay: {{ etcd.health.splay }}
    - enabled: {{ etcd.health.enabled }}
    - maxrunning: 1
    - return_job: false
    - persist: true
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - sls: {{ tplroot }}.service
{%- else %}
etcd-health-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-health
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    # Removing the job needs no running etcd, only a valid pillar.
    - require:
      - sls: {{ tplroot }}.validate
{%- endif %}
