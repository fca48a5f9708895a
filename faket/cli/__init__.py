"""``faket`` command line: one subcommand per pipeline step.

Subcommand modules are imported lazily-light: each defines ``HELP``, ``add_arguments(parser)`` and
``run(args)``; heavy libraries (torch, scipy, ...) are imported inside ``run`` so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time

from faket import __version__
from faket.errors import InputError

# Order = pipeline order (shown in --help).
COMMANDS = [
    "layout",
    "project",
    "reference",
    "noise",
    "style",
    "stack",
    "reconstruct",
    "labels",
    "qc",
    "realism",
    "evaluate",
    "manifest",
    "dataset",
    "export",
    "picker",
    "benchmark",
]

_NEG_VALUE = re.compile(r"^-(\d|\.\d)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faket",
        description="Fast labelled, realistic-looking cryo-ET tomograms (FakET): layout -> project -> "
        "noise -> style transfer -> weighted back-projection, with labels.",
    )
    parser.add_argument("--version", action="version", version=f"faket {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<step>")
    for name in COMMANDS:
        mod = importlib.import_module(f"faket.cli.{name}")  # a step that fails to import is a bug: raise
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(func=mod.run, _step=name)
    return parser


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings (of the parser and its subparsers) that take a value."""
    opts: set[str] = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                stack.extend(a.choices.values())
            elif a.option_strings and a.nargs != 0:
                opts.update(a.option_strings)
    return opts


def normalise_argv(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Let options take negative values as users type them: ``--angles -60:60:2`` -> ``--angles=-60:60:2``.

    argparse reads ``-60:60:2`` as an unknown flag; a token that starts with ``-`` and a digit and
    follows an option that takes a value is glued to it.
    """
    value_opts = _value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in value_opts and tok.startswith("--") and i + 1 < len(argv) and _NEG_VALUE.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    args = parser.parse_args(normalise_argv(argv, parser))
    args._t0 = t0  # the step's start, for wall_time_s in its provenance (faket.cli._common.Step)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except InputError as exc:
        print(f"faket {args._step}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"faket {args._step}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"faket {args._step}: error: out of memory (try smaller --chunk-y / --tilt-batch)", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
