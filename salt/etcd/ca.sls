# The CA minion (etcd:tls:ca_minion, never a member): the client CA and the peer CA, the
# x509_v2 signing policies members use, and the CA certificates published to the mine.
#   salt <ca minion> state.apply etcd.ca
etcd-ca-authority-etcd_ca-ca_managed:
  etcd_ca.ca_managed:
    - name: etcd
