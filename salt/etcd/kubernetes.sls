# Kubernetes objects for the external etcd (Service, EndpointSlice, with TLS the client
# bundle Secret), written on the minion named in etcd:kubernetes:minion:
#   salt <that minion> state.apply etcd.kubernetes
{%- from tpldir ~ "/map.jinja" import mapdata as etcd with context %}
etcd-kubernetes-manifests-etcd_kubernetes-manifests:
  etcd_kubernetes.manifests:
    - name: etcd

{%- if etcd.tls.enabled and etcd.tls.mode == 'ca_minion' and etcd.tls.renew_schedule
       and etcd.kubernetes.minion == grains['id'] %}
# Renewal without anyone applying: the Secret's bundle is judged locally, reissued inside
# tls:renew_days, the manifest rewritten (and applied with kubernetes:apply), an event
# etcd/<cluster>/tls/renewed after it. A Secret that expires takes the operator down.
etcd-kubernetes-renew-schedule-etcd_health-scheduled:
  etcd_health.scheduled:
    - name: etcd-kubernetes-renew
    - function: etcd_kubernetes.renew_due
    - seconds: {{ etcd.tls.renew_interval }}
    - splay: {{ [etcd.tls.renew_interval // 10, 600] | min }}
    - maxrunning: 1
    - return_job: false
    - persist: true
    - require:
      - etcd_kubernetes: etcd-kubernetes-manifests-etcd_kubernetes-manifests
{%- else %}
etcd-kubernetes-renew-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-kubernetes-renew
{%- endif %}
