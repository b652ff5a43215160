"""etcd.env is written once and read back the same way by the formula, sh and systemd.

systemd's own reading is checked in the lab (tests/integration/test_rolling.py), where a
node's systemd runs a unit with the file; here a real POSIX shell sources it.
"""

import subprocess

import etcd_envfile
import pytest

VALUES = [
    ("plain", "https://10.0.0.1:2379,https://127.0.0.1:2379"),
    ("path", "/etc/etcd/pki/server.crt"),
    ("empty", ""),
    ("space", "a b  c"),
    ("dollar", "$HOME and ${PATH}"),
    ("backtick", "`id`"),
    ("quotes", 'it\'s "quoted"'),
    ("backslash", "C:\\dir\\n"),
    ("hash", "value #not a comment"),
    ("semicolon", "a;b&c|d"),
    ("equals", "k=v,x=y"),
    ("glob", "*?[a]~"),
]


@pytest.mark.parametrize("label, value", VALUES, ids=[v[0] for v in VALUES])
def test_a_value_reads_back_as_written(label, value):
    text = "\n".join(etcd_envfile.lines({"ETCD_X": value})) + "\n"
    assert etcd_envfile.parse(text) == {"ETCD_X": value}


def test_safe_values_stay_bare_so_old_files_keep_their_bytes():
    assert etcd_envfile.lines({"ETCD_NAME": "etcd1", "ETCD_DATA_DIR": "/var/lib/etcd"}) == [
        "ETCD_DATA_DIR=/var/lib/etcd",
        "ETCD_NAME=etcd1",
    ]
    assert etcd_envfile.quote("a b") == '"a b"'


def test_a_file_written_before_quoting_parses_to_the_same_values():
    old = "# Managed by Salt\nETCD_NAME=etcd1\nETCD_ENABLE_PPROF=true\n"
    new = "# header changed\nETCD_NAME=\"etcd1\"\nETCD_ENABLE_PPROF='true'\n"
    assert etcd_envfile.parse(old) == etcd_envfile.parse(new) == {"ETCD_NAME": "etcd1", "ETCD_ENABLE_PPROF": "true"}


@pytest.mark.parametrize("key", ["etcd_lower", "ETCD-DASH", "ETCD X", "1ETCD", "ETCD_X\nY"])
def test_a_bad_variable_name_is_refused(key):
    with pytest.raises(ValueError, match="not an environment variable name"):
        etcd_envfile.lines({key: "v"})


def test_a_posix_shell_reads_every_value_as_written(tmp_path):
    env = {f"ETCD_{label.upper()}": value for label, value in VALUES}
    path = tmp_path / "etcd.env"
    path.write_text("\n".join(etcd_envfile.lines(env)) + "\n")
    names = sorted(env)
    script = f". {path}; " + "; ".join(f'printf "%s\\0" "${n}"' for n in names)
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True, env={}).stdout.decode()
    assert dict(zip(names, out.split("\0")[:-1], strict=True)) == env
