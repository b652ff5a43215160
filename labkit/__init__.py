"""The etcd-formula lab: real systemd nodes (systemd-nspawn) on a private bridge.

Used by the ``./lab`` command and by the pytest fixtures in ``tests/integration``.
"""
