{#- A minion no longer under etcd:members that still holds etcd data or a unit: remove its
    member (guarded: cluster lock, quorum and min_members), retire etcd here, and stop its
    scheduled health check. init.sls includes this instead of the install chain. #}
{%- set tplroot = tpldir.split('/')[0] %}

include:
  - {{ tplroot }}.validate

etcd-leave-member-etcd_membership-left:
  etcd_membership.left:
    - name: etcd
    - require:
      - sls: {{ tplroot }}.validate

etcd-leave-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-health
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - etcd_membership: etcd-leave-member-etcd_membership-left

# The backup job goes with the member; its snapshots stay (they are not the node's to lose).
etcd-leave-backup-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-backup
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - etcd_membership: etcd-leave-member-etcd_membership-left

etcd-leave-maintenance-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-maintenance
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - etcd_membership: etcd-leave-member-etcd_membership-left

# The gate before the next change: the members that stay form a healthy cluster.
etcd-leave-cluster-etcd_health-healthy:
  etcd_health.healthy:
    - name: etcd
    - require:
      - etcd_membership: etcd-leave-member-etcd_membership-left
