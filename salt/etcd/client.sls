{#- A consumer's client bundle, on a minion listed in etcd:tls:bundle_minions (the storage
    operator's host, an application server):
      salt app1 state.apply etcd.client
    The bundle goes where its pillar entry says ({cn, dir, user}; /etc/etcd-client by
    default), and a renewal job of its own renews it inside tls:renew_days without anyone
    applying. The Kubernetes Secret's bundle is etcd.kubernetes's, with its own job. #}
{%- from tpldir ~ "/map.jinja" import mapdata as etcd with context %}
{%- set spec = salt['etcd_tls.bundle_spec']() %}

etcd-client-bundle-etcd_tls-bundle:
  etcd_tls.bundle:
    - name: {{ (spec.dir if spec else '/etc/etcd-client') | json }}

{%- if etcd.tls.enabled and etcd.tls.mode == 'ca_minion' and etcd.tls.renew_schedule %}
# Renewal without anyone applying: judged locally, the CA minion asked only when due, an
# event etcd/<cluster>/tls/renewed after it.
etcd-client-renew-schedule-etcd_health-scheduled:
  etcd_health.scheduled:
    - name: etcd-client-renew
    - function: etcd_tls.renew_bundle
    - seconds: {{ etcd.tls.renew_interval }}
    - splay: {{ [etcd.tls.renew_interval // 10, 600] | min }}
    - maxrunning: 1
    - return_job: false
    - persist: true
    - require:
      - etcd_tls: etcd-client-bundle-etcd_tls-bundle
{%- else %}
etcd-client-renew-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-client-renew
{%- endif %}
