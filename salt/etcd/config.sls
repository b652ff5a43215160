{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as etcd with context %}
{%- from tplroot ~ "/marker.jinja" import marker %}

include:
  - {{ tplroot }}.install
  - {{ tplroot }}.tls
  - {{ tplroot }}.unit

etcd-config-data-dir-file-directory:
  file.directory:
    - name: {{ etcd.paths.data }}
    - user: {{ etcd.user }}
    - group: {{ etcd.group }}
    - mode: '0700'
    - require:
      - sls: {{ tplroot }}.install

etcd-config-dir-file-directory:
  file.directory:
    - name: {{ etcd.paths.config_dir }}
    - user: root
    - group: {{ etcd.group }}
    - mode: '0750'
    - require:
      - sls: {{ tplroot }}.install
{{ marker('etcd-config-dir-marker-file-managed', etcd.paths.config_dir, 'file: etcd-config-dir-file-directory') }}
{{ marker('etcd-config-state-marker-file-managed', etcd.paths.state, 'sls: ' ~ tplroot ~ '.install') }}

{#- While a running member waits for its guarded switch to a new version, etcd.env stays
    rendered for the version it runs and the new version's is staged beside it; the
    guarded restart moves it into place together with the binaries. #}
{%- set config_version = salt['etcd_cluster.config_version']() %}
{%- set envs = [('env', 'etcd.env', config_version)] %}
{%- if config_version != etcd.version %}
{%-   do envs.append(('env-staged', 'etcd.env.' ~ etcd.version, etcd.version)) %}
{%- endif %}
{%- for what, file, version in envs %}

etcd-config-{{ what }}-file-managed:
  file.managed:
    - name: {{ etcd.paths.config_dir }}/{{ file }}
    - source: salt://{{ tplroot }}/files/etcd.env.jinja
    - template: jinja
    - user: root
    - group: {{ etcd.group }}
    - mode: '0640'
    - context:
        lines: {{ salt['etcd_cluster.env_lines'](version=version) | json }}
    - require:
      - file: etcd-config-dir-file-directory
      - sls: {{ tplroot }}.tls
{%- endfor %}

# The settings this apply rendered, for the scheduled health check: the minion daemon's
# in-memory pillar stays as it was until a pillar refresh, and the check must judge the
# cluster the node actually runs. mapdata is the pure read of pillar: without what the
# live cluster says during a move to TLS (etcd_cluster.live_settings).
etcd-config-settings-file-serialize:
  file.serialize:
    - name: {{ etcd.paths.config_dir }}/formula-settings.json
    - dataset: {{ etcd | json }}
    - serializer: json
    - user: root
    - group: {{ etcd.group }}
    - mode: '0640'
    - require:
      - file: etcd-config-env-file-managed
