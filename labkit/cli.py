"""`./lab`: the lab as a command. Every error is one line naming the fix."""

import argparse
import os
import sys

import yaml

from labkit import lab, network, node, pillar
from labkit.errors import LabError
from labkit.preflight import VENV
from labkit.state import RunState, list_runs

USAGE = """\
./lab up [--nodes N] [--apply] [--log-level L]   start a run (N etcd nodes + ca1, master, mirror)
./lab down [--all]                              remove the run (or every run) entirely
./lab status                                    runs, nodes, their state
./lab salt|salt-run|salt-key|salt-call ARGS...  the real Salt CLIs against the run's master
./lab exec NODE CMD...                          run CMD inside NODE
./lab crash NODE | boot NODE                    kill a node's PID 1 / boot it again
./lab partition NODE_A NODE_B | isolate NODE    cut two nodes apart / cut a node off the bridge
./lab heal                                      undo every partition and isolation
./lab pillar show | set KEY YAML | unset KEY    the run's lab site pillar (KEY like etcd:members)
Choose a run with LAB_RUN=<id> when more than one exists."""


def _node(state, name):
    if name not in state["nodes"]:
        raise LabError(f"no node {name!r} in run {state['id']}: nodes are {', '.join(state['nodes'])}")
    return name


def cmd_up(args):
    state = lab.up(nodes=args.nodes, log_level=args.log_level)
    print(f"lab {state['id']} up: master {state['gateway']}, mirror {state['mirror']['url']}")
    for name, n in state["nodes"].items():
        print(f"  {name:8} {n['ip']}")
    if args.apply:
        from labkit.apply import apply_formula

        return apply_formula(state)
    return 0


def cmd_down(args):
    runs = list_runs() if args.all else [RunState.load()]
    for state in runs:
        lab.teardown(state)
        print(f"lab {state['id']} down")
    return 0


def cmd_status(_args):
    runs = list_runs()
    if not runs:
        print("no lab run on this machine")
    for state in runs:
        print(f"lab {state['id']}: bridge {state['bridge']} {state['prefix']}.0/24, master {state['gateway']}")
        for name, n in state["nodes"].items():
            print(f"  {name:8} {n['ip']:15} {lab.node_status(state, name)}")
    return 0


def cmd_salt(tool, argv):
    state = RunState.load()
    exe = VENV / "bin" / tool
    if tool == "salt-call":
        raise LabError("salt-call runs on a node: ./lab exec NODE salt-call ...")
    os.execv(exe, [str(exe), "-c", state["master"]["conf_dir"], *argv])


def cmd_exec(argv):
    if len(argv) < 2:
        raise LabError("usage: ./lab exec NODE CMD...")
    state = RunState.load()
    os.execvp("nsenter", node.exec_argv(state, _node(state, argv[0]), argv[1:]))


def cmd_pillar(argv):
    state = RunState.load()
    if not argv or argv[0] == "show":
        print(pillar.site_path(state).read_text(), end="")
        return 0
    if argv[0] == "set" and len(argv) == 3:
        pillar.set_key(state, argv[1], yaml.safe_load(argv[2]))
    elif argv[0] == "unset" and len(argv) == 2:
        pillar.set_key(state, argv[1], None)
    else:
        raise LabError("usage: ./lab pillar show | set KEY YAML | unset KEY")
    print(f"{pillar.site_path(state)} updated: run `./lab salt '*' saltutil.refresh_pillar`")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    try:
        if verb in ("salt", "salt-run", "salt-key", "salt-call"):
            return cmd_salt(verb, rest)
        if verb == "exec":
            return cmd_exec(rest)
        if verb == "pillar":
            return cmd_pillar(rest)
        parser = argparse.ArgumentParser(prog=f"./lab {verb}", add_help=False)
        if verb == "up":
            parser.add_argument("--nodes", type=int, default=3)
            parser.add_argument("--apply", action="store_true")
            parser.add_argument("--log-level", default="info")
            return cmd_up(_parse(parser, rest))
        if verb == "down":
            parser.add_argument("--all", action="store_true")
            return cmd_down(_parse(parser, rest))
        if verb == "status":
            return cmd_status(_parse(parser, rest))
        if verb in ("crash", "boot", "isolate") and len(rest) == 1:
            state = RunState.load()
            name = _node(state, rest[0])
            {"crash": lab.crash, "boot": lab.boot, "isolate": network.isolate}[verb](state, name)
            return 0
        if verb == "partition" and len(rest) == 2:
            state = RunState.load()
            network.partition(state, _node(state, rest[0]), _node(state, rest[1]))
            return 0
        if verb == "heal" and not rest:
            network.heal(RunState.load())
            return 0
        raise LabError(f"unknown or incomplete command `./lab {' '.join(argv)}`: see ./lab --help")
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted (anything it had started was removed)", file=sys.stderr)
        return 130


def _parse(parser, rest):
    args, extra = parser.parse_known_args(rest)
    if extra:
        raise LabError(f"unknown argument {' '.join(extra)}: see ./lab --help")
    return args


if __name__ == "__main__":
    sys.exit(main())
