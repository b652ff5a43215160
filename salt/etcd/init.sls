# etcd-formula: validate -> install -> tls -> config -> service -> health.
# Each SLS requires the previous one, so an invalid pillar stops everything at the first
# state, before anything on the node changes.
include:
  - .validate
  - .install
  - .tls
  - .config
  - .service
  - .health
