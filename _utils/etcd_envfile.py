"""etcd.env, written and read one way: what systemd's EnvironmentFile= and a shell both read.

A value made only of safe characters stays bare, so the files of sites whose values never
needed quoting keep their bytes; any other value is double-quoted with `\\`, `"`, `$` and
`` ` `` escaped, which systemd (env-file parser) and POSIX sh read back alike. Control
characters never get here: validation refuses them in every pillar string. Restart
decisions compare parsed values (`parse`), so a value written bare once and quoted later
is the same value and restarts nothing.
"""

import re

BARE = re.compile(r"^[A-Za-z0-9_./:,=@%+-]+$")
KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ESCAPED = re.compile(r'([\\"$`])')


def quote(value):
    value = str(value)
    if BARE.match(value):
        return value
    return '"' + _ESCAPED.sub(r"\\\1", value) + '"'


def lines(env):
    """`KEY=value` lines, sorted by key, values quoted where needed."""
    for key in env:
        if not KEY.match(key):
            raise ValueError(f"not an environment variable name: {key!r}")
    return [f"{key}={quote(env[key])}" for key in sorted(env)]


def _unquote(raw):
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        out, chars = [], iter(raw[1:-1])
        for c in chars:
            if c == "\\":
                nxt = next(chars, "")
                # As sh and systemd: a backslash escapes only these; otherwise it stays.
                out.append(nxt if nxt in '\\"$`' else "\\" + nxt)
            else:
                out.append(c)
        return "".join(out)
    return raw


def parse(text):
    """{KEY: value} of an env file's assignments (comments and blank lines skipped)."""
    env = {}
    for raw_line in (text or "").splitlines():
        line = raw_line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        env[key.strip()] = _unquote(raw)
    return env
