etcd-validate-settings-etcd_cluster-validated:
  etcd_cluster.validated:
    - name: etcd
