{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

include:
  - {{ tplroot }}.validate
  - {{ tplroot }}.service

# Every member runs the backup job; etcd decides which one takes each interval's snapshot
# (a per-interval claim on a lease: README, Backups and recovery). The job runs four times
# per interval so that another member takes over within the same interval when the one
# that claimed it fails.
{%- if etcd.backup.schedule %}
etcd-backup-dir-file-directory:
  file.directory:
    - name: {{ etcd.backup.dir }}
    - user: root
    - group: root
    - mode: '0700'
    - makedirs: true
    # Like every state, only once the pillar is valid (a bad pillar changes nothing).
    - require:
      - sls: {{ tplroot }}.service

etcd-backup-schedule-etcd_health-scheduled:
  etcd_health.scheduled:
    - name: etcd-backup
    - function: etcd_backup.scheduled
    - seconds: {{ salt['etcd_backup.check_seconds']() }}
    - splay: {{ etcd.backup.splay }}
    - enabled: {{ etcd.backup.enabled }}
    - maxrunning: 1
    - return_job: false
    - persist: true
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - sls: {{ tplroot }}.service
      - file: etcd-backup-dir-file-directory
{%- else %}
etcd-backup-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-backup
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    # Removing the job needs no running etcd, only a valid pillar.
    - require:
      - sls: {{ tplroot }}.validate
{%- endif %}
