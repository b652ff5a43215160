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

# The member's jobs go with it: health, backup (its snapshots stay: they are not the
# node's to lose), maintenance and certificate renewal.
{%- for job, id in (('etcd-health', 'schedule'), ('etcd-backup', 'backup-schedule'),
                    ('etcd-maintenance', 'maintenance-schedule'), ('etcd-tls-renew', 'tls-renew-schedule')) %}
etcd-leave-{{ id }}-schedule-absent:
  schedule.absent:
    - name: {{ job }}
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - etcd_membership: etcd-leave-member-etcd_membership-left
{%- endfor %}

# The gate before the next change: the members that stay form a healthy cluster.
etcd-leave-cluster-etcd_health-healthy:
  etcd_health.healthy:
    - name: etcd
    - require:
      - etcd_membership: etcd-leave-member-etcd_membership-left
