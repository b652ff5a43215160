{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}
{%- from tplroot ~ "/marker.jinja" import marker %}

include:
  - {{ tplroot }}.install

{%- if etcd.tls.enabled %}
etcd-tls-dir-file-directory:
  file.directory:
    - name: {{ etcd.tls.dir }}
    - user: root
    - group: {{ etcd.group }}
    - mode: '0755'
    - makedirs: true
    - require:
      - sls: {{ tplroot }}.install
{{ marker('etcd-tls-dir-marker-file-managed', etcd.tls.dir, 'file: etcd-tls-dir-file-directory') }}

  {%- if etcd.tls.mode == 'files' %}
etcd-tls-files-etcd_tls-files_installed:
  etcd_tls.files_installed:
    - name: etcd
    - require:
      - file: etcd-tls-dir-file-directory
  {%- else %}
# The CA certificates from the mine, then this member's own keys and certificates:
# keys are made here, only public keys travel to the CA minion.
etcd-tls-trust-etcd_tls-trusted:
  etcd_tls.trusted:
    - name: etcd
    - require:
      - file: etcd-tls-dir-file-directory

etcd-tls-certificates-etcd_tls-certificates:
  etcd_tls.certificates:
    - name: etcd
    - require:
      - etcd_tls: etcd-tls-trust-etcd_tls-trusted
  {%- endif %}

  {%- if etcd.tls.mode == 'ca_minion' and etcd.tls.renew_schedule %}
# Renewal without anyone applying: the job renews only what is inside renew_days (the
# certificates state alone, judged locally first) and sends etcd/<cluster>/tls/renewed.
# A site that applies monthly with 30 days' margin would otherwise let certificates expire.
etcd-tls-renew-schedule-etcd_health-scheduled:
  etcd_health.scheduled:
    - name: etcd-tls-renew
    - function: etcd_tls.renew_due
    - seconds: {{ etcd.tls.renew_interval }}
    - splay: {{ [etcd.tls.renew_interval // 10, 600] | min }}
    - maxrunning: 1
    - return_job: false
    - persist: true
    {%- if opts.get('file_client') == 'local' %}
    - offline: true
    {%- endif %}
    - require:
      - etcd_tls: etcd-tls-certificates-etcd_tls-certificates
  {%- else %}
etcd-tls-renew-schedule-schedule-absent:
  schedule.absent:
    - name: etcd-tls-renew
    {%- if opts.get('file_client') == 'local' %}
    - offline: true
    {%- endif %}
    # After the files are checked: a refused file changes nothing, the schedule included.
    - require:
    {%- if etcd.tls.mode == 'files' %}
      - etcd_tls: etcd-tls-files-etcd_tls-files_installed
    {%- else %}
      - etcd_tls: etcd-tls-certificates-etcd_tls-certificates
    {%- endif %}
  {%- endif %}

# `etcdctl` for root on a member, with the admin client certificate (found first in
# root's PATH; the release's own binary stays in {{ etcd.paths.bin }}).
etcd-tls-etcdctl-file-managed:
  file.managed:
    - name: /usr/local/sbin/etcdctl
    - mode: '0755'
    - contents: |
        #!/bin/sh
        # Managed by Salt (etcd-formula): etcdctl with this member's admin client certificate.
        # Each default is added as a flag, only when neither its flag nor its ETCDCTL_*
        # variable is given: etcdctl refuses a flag that a variable shadows, and 3.5's
        # move-leader fails whenever the certificate comes from a variable.
        given=" $* "
        default() {
          case "$given" in *" --$1"*) return ;; esac
          [ -n "$2" ] && return
          set_args="$set_args --$1=$3"
        }
        set_args=""
        default endpoints "${ETCDCTL_ENDPOINTS:-}" 'https://127.0.0.1:{{ etcd.ports.client }}'
        default cacert "${ETCDCTL_CACERT:-}" '{{ etcd.tls.dir }}/client-ca.crt'
        default cert "${ETCDCTL_CERT:-}" '{{ etcd.tls.dir }}/admin.crt'
        default key "${ETCDCTL_KEY:-}" '{{ etcd.tls.dir }}/admin.key'
        # The defaults are single words (validated paths, a URL): split on purpose.
        exec '{{ etcd.paths.bin }}/etcdctl' $set_args "$@"
    - require:
      - file: etcd-tls-dir-file-directory
{%- else %}
etcd-tls-etcdctl-file-absent:
  file.absent:
    - name: /usr/local/sbin/etcdctl
    - require:
      - sls: {{ tplroot }}.install
{%- endif %}
