"""The `flosssweep` command: `flosssweep run|report|trial|bench ...`, the same as `python -m flosssweep.<name>`.

Each subcommand hands its arguments, untouched, to the module's own `main`, so `flosssweep run
--help` is `python -m flosssweep.run --help` and both forms keep working.
"""

from __future__ import annotations

import importlib
import sys

from flosssweep import __version__

# subcommand -> (module whose main() runs it, what it does)
COMMANDS = {
    "run": ("flosssweep.run", "run a sweep file through Ray Tune, recorded in MLflow"),
    "report": ("flosssweep.report", "success rates and T50 of a sweep: tables, figures, summary on MLflow"),
    "trial": ("flosssweep.trial", "train one trial (an ensemble of realizations) without Ray or MLflow"),
    "bench": ("flosssweep.bench", "time the trainer's pieces and the sweep's overhead"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return (
        "usage: flosssweep {" + ",".join(COMMANDS) + "} [options]   (flosssweep COMMAND --help for its options)\n"
        "       flosssweep --version\n\ncommands:\n" + "\n".join(lines) + "\n"
    )


def version_text() -> str:
    from flosssweep import provenance

    commit, dirty = provenance.git_state()
    code = "" if commit == provenance.UNKNOWN else f" (git {commit[:12]}{', uncommitted changes' if dirty else ''})"
    libraries = ", ".join(f"{lib} {provenance.version(lib)}" for lib in provenance.LIBRARIES)
    return f"flosssweep {__version__}{code}; {libraries}"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(version_text())
        return 0
    if args[0] not in COMMANDS:
        print(
            f"flosssweep: error: unknown command {args[0]!r} (expected one of {', '.join(COMMANDS)}; "
            "see flosssweep --help)",
            file=sys.stderr,
        )
        return 2
    module, _ = COMMANDS[args[0]]
    if args[0] == "run":  # names itself as typed in its usage line
        from flosssweep.sweep.driver import main as run_main

        return run_main(args[1:], prog="flosssweep run")
    return importlib.import_module(module).main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
