# Reactor for the scheduled health check's events (see docs/reactor.md):
#   reactor:
#     - 'etcd/*/health/degraded': [salt://etcd/reactor/health.sls]
#     - 'etcd/*/health/critical': [salt://etcd/reactor/health.sls]
#     - 'etcd/*/health/error': [salt://etcd/reactor/health.sls]
# `data` is the event: `data.id` the reporting minion, `data.data` its report. The runner
# logs, fires etcd/<cluster>/alert and posts to `etcd_alert_webhook` (master config),
# once per cluster, verdict and set of reasons an hour.
{%- set verdict = tag.split('/')[-1] %}
{%- if verdict in ('degraded', 'critical', 'error') and data.get('data') is mapping %}
etcd-reactor-health-alert-runner-etcd-alert:
  runner.etcd.alert:
    - args:
      - report: {{ data['data'] | json }}
      - minion: {{ data.get('id') | json }}
{%- endif %}
