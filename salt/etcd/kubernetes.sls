# Kubernetes objects for the external etcd (Service, EndpointSlice, with TLS the client
# bundle Secret), written on the minion named in etcd:kubernetes:minion:
#   salt <that minion> state.apply etcd.kubernetes
etcd-kubernetes-manifests-etcd_kubernetes-manifests:
  etcd_kubernetes.manifests:
    - name: etcd
