{#- The member passes of a CA rotation, after `salt <ca minion> etcd_tls.rotate_ca`:
      salt-run state.orch etcd.orch.rotate_ca \
        pillar='{etcd_orch: {members: [etcd1, etcd2, etcd3], bundle_minions: [k8s-master1]}}'  # noqa: 206 (YAML flow mapping, not Jinja)
    1. trust: each member writes the new CA next to the old and restarts through the
       guarded path (one at a time, leader last), so its running etcd trusts both;
    2. the consumers' client bundles (etcd.kubernetes on `bundle_minions`): their CA file
       holds both CAs, their certificate comes from the new CA;
    3. certificates: each member takes new server, peer and admin certificates from the
       new CA (no restart: etcd reads them per TLS handshake).
    Then, once the consumers run with their new bundle: `salt <ca minion> etcd_tls.retire_ca`
    and `etcd.orch.rolling` drop the old CA (a guarded restart each). README: TLS, CA rotation. #}
{%- from tpldir ~ "/walk.jinja" import walk with context %}
{%- set members = salt['pillar.get']('etcd_orch:members', []) %}
{%- set bundles = salt['pillar.get']('etcd_orch:bundle_minions', []) %}
{{ walk('rotate-trust', members, '[etcd1, etcd2, etcd3]') }}
{%- set last_trust = 'etcd-orch-rotate-trust-' ~ members[-1] ~ '-salt-state' if members else None %}
{%- for minion in bundles %}

etcd-orch-rotate-bundle-{{ minion }}-salt-state:
  salt.state:
    - tgt: {{ minion }}
    - sls: etcd.kubernetes
  {%- if last_trust %}
    - require:
      - salt: {{ last_trust }}
  {%- endif %}
{%- endfor %}
{%- set before_certs = 'etcd-orch-rotate-bundle-' ~ bundles[-1] ~ '-salt-state' if bundles else last_trust %}
{{ walk('rotate-certs', members, '[etcd1, etcd2, etcd3]', after=before_certs) }}
