{#- Reverse chain, safe by default (README: Removing etcd from a node). On a live member it
    refuses unless pillar `etcd:clean:force` says so; forced, the member leaves through the
    guarded removal first (cluster lock, quorum, membership:min_members, leader hand-over),
    so applying it to every member at once takes them out one per turn and stops at
    min_members; `whole_cluster` (with force) stops it without a removal instead. Then the
    schedule, unit, binaries, config and TLS material go; a directory only when it carries
    the formula's marker. The data dir is set aside, deleted only with `delete_data`. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}

etcd-clean-validate-etcd_cluster-validated:
  etcd_cluster.validated:
    - name: etcd
    - member: false

etcd-clean-member-etcd_membership-cleaned:
  etcd_membership.cleaned:
    - name: etcd
    - force: {{ etcd.clean.force }}
    - whole_cluster: {{ etcd.clean.whole_cluster }}
    - delete_data: {{ etcd.clean.delete_data }}
    - require:
      - etcd_cluster: etcd-clean-validate-etcd_cluster-validated

# The member's jobs go with it: health, backup (its snapshots stay: they are not the
# node's to lose), maintenance and certificate renewal.
{%- for job, id in (('etcd-health', 'schedule'), ('etcd-backup', 'backup-schedule'),
                    ('etcd-maintenance', 'maintenance-schedule'), ('etcd-tls-renew', 'tls-renew-schedule')) %}
etcd-clean-{{ id }}-schedule-absent:
  schedule.absent:
    - name: {{ job }}
  {%- if opts.get('file_client') == 'local' %}
    - offline: true
  {%- endif %}
    - require:
      - etcd_membership: etcd-clean-member-etcd_membership-cleaned
{%- endfor %}

etcd-clean-unit-file-absent:
  file.absent:
    - name: {{ etcd.paths.unit }}
    - require:
      - etcd_membership: etcd-clean-member-etcd_membership-cleaned

etcd-clean-unit-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: etcd-clean-unit-file-absent

{#- The links the install made into its release dirs; a file of that name that is no link
    is not the formula's and stays. #}
{%- for binary in ['etcd', 'etcdctl', 'etcdutl'] %}

etcd-clean-link-{{ binary }}-file-absent:
  file.absent:
    - name: {{ etcd.paths.bin }}/{{ binary }}
    - onlyif:
      - fun: file.is_link
        path: {{ etcd.paths.bin }}/{{ binary }}
    - require:
      - etcd_membership: etcd-clean-member-etcd_membership-cleaned
{%- endfor %}

etcd-clean-etcdctl-wrapper-file-absent:
  file.absent:
    - name: /usr/local/sbin/etcdctl
    - onlyif:
      # A site without TLS never had the wrapper: file.search raises on a missing file.
      - fun: file.search
        path: /usr/local/sbin/etcdctl
        pattern: 'Managed by Salt \(etcd-formula\)'
        ignore_if_missing: true
    - require:
      - etcd_membership: etcd-clean-member-etcd_membership-cleaned

{#- Snapshots hold data: kept with the state dir unless delete_data. #}
{%- set snapshots = etcd.upgrade.snapshot_dir %}
{%- set keep = [] if etcd.clean.delete_data or snapshots.rsplit('/', 1)[0] != etcd.paths.state
                else [snapshots.rsplit('/', 1)[1]] %}
{%- for what, directory, kept in [('tls', etcd.tls.dir, []),
                                  ('config', etcd.paths.config_dir, []),
                                  ('releases', etcd.paths.install, []),
                                  ('state', etcd.paths.state, keep)] %}

etcd-clean-{{ what }}-etcd_clean-owned_absent:
  etcd_clean.owned_absent:
    - name: {{ directory }}
    - keep: {{ kept | json }}
    - require:
      - etcd_membership: etcd-clean-member-etcd_membership-cleaned
  {%- for binary in ['etcd', 'etcdctl', 'etcdutl'] if what == 'releases' %}
      - file: etcd-clean-link-{{ binary }}-file-absent
  {%- endfor %}
{%- endfor %}
