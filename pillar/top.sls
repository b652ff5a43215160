# Assign each site's pillar to its minions. Copy sites/example.sls to sites/<site>.sls,
# set its members, and match the same minions here. The lab uses its own pillar
# environment (`lab`) and assigns nothing through this file.
base:
  # 'etcd*':
  #   - sites.example
  'G@etcd_site:example':
    - match: compound
    - sites.example
