{#- The member passes of a CA rotation, after `salt <ca minion> etcd_ca.rotate_ca`:
      salt-run state.orch etcd.orch.rotate_ca pillar='{etcd_orch: {members: [etcd1, etcd2, etcd3],  # noqa: 206 (YAML flow mapping)
        bundle_minions: [k8s-master1], bundles: {app1: /etc/etcd-client}}}'  # noqa: 206 (YAML flow mapping, not Jinja)
    1. trust: each member writes the new CA next to the old and restarts through the
       guarded path (one at a time, leader last), so its running etcd trusts both;
    2. the consumers' client bundles, before any member serves a certificate from the new
       CA: their CA file holds both CAs, their certificate comes from the new CA.
       `bundle_minions`: the Kubernetes minion (etcd.kubernetes, the Secret); `bundles`:
       any other consumer, minion -> its bundle directory (etcd_tls.client_bundle);
    3. certificates: each member takes new server, peer and admin certificates from the
       new CA (no restart: etcd reads them per TLS handshake).
    Then, once the consumers run with their new bundle: `salt <ca minion> etcd_ca.retire_ca`
    and `etcd.orch.rolling` drop the old CA (a guarded restart each). README: TLS, CA rotation. #}
{%- from tpldir ~ "/walk.jinja" import walk with context %}
{%- from tpldir ~ "/args.jinja" import bad_args, refuse with context %}
{%- set members = salt['pillar.get']('etcd_orch:members', []) %}
{%- set k8s = salt['pillar.get']('etcd_orch:bundle_minions', []) %}
{%- set bundles = salt['pillar.get']('etcd_orch:bundles', {}) %}
{%- set example = "'{etcd_orch: {members: [etcd1, etcd2, etcd3], bundles: {app1: /etc/etcd-client}}}'" %}  # noqa: 206 (YAML flow mapping, not Jinja)
{%- set lists = [members, k8s] | reject('string') | select('sequence') | reject('mapping') | list %}
{%- if lists | length != 2 or bundles is not mapping %}
{{ refuse('rotate', 'members and bundle_minions must be lists of minions, bundles a mapping of minion: directory',
          example) }}
{%- elif bad_args(members | list + k8s | list + bundles | list, bundles.values() | list) %}
{{ refuse('rotate', bad_args(members | list + k8s | list + bundles | list, bundles.values() | list), example) }}
{%- else %}
{{ walk('rotate-trust', members, '[etcd1, etcd2, etcd3]') }}
{%- set last_trust = 'etcd-orch-rotate-trust-' ~ members[-1] ~ '-salt-state' if members else None %}
{%- set steps = [] %}
{%- for minion in k8s %}
{%-   do steps.append('etcd-orch-rotate-bundle-' ~ minion ~ '-salt-state') %}

etcd-orch-rotate-bundle-{{ minion }}-salt-state:
  salt.state:
    - tgt: {{ minion }}
    - tgt_type: list
    - sls: etcd.kubernetes
  {%- if last_trust %}
    - require:
      - salt: {{ last_trust }}
  {%- endif %}
{%- endfor %}
{%- for minion, directory in bundles | dictsort %}
{%-   do steps.append('etcd-orch-rotate-bundle-' ~ minion ~ '-salt-function') %}

etcd-orch-rotate-bundle-{{ minion }}-salt-function:
  salt.function:
    - name: etcd_tls.client_bundle
    - tgt: {{ minion }}
    - tgt_type: list
    - arg:
      - {{ directory }}
  {%- if last_trust %}
    - require:
      - salt: {{ last_trust }}
  {%- endif %}
{%- endfor %}
{#- The certificates pass waits for every consumer's bundle: a consumer whose CA file
    lacks the new CA would refuse the members' new server certificates. #}
{{ walk('rotate-certs', members, '[etcd1, etcd2, etcd3]', after=steps or last_trust) }}
{%- endif %}
