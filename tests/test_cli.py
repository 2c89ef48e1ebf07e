"""The `flosssweep` command: subcommands hand over to the modules, --version, help texts."""

import subprocess
import sys

from flosssweep import __version__, cli
from flosssweep.sweep import driver


def test_version_names_the_package_and_the_libraries(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"flosssweep {__version__}") and all(
        lib in out for lib in ("torch", "ray", "mlflow", "optuna")
    )


def test_usage_and_unknown_command(capsys):
    assert cli.main([]) == 2 and "run" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "frobnicate" in err[0]


def test_run_help_lists_the_exit_codes(capsys):
    try:
        cli.main(["run", "--help"])
    except SystemExit as done:
        assert done.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: flosssweep run")
    for code in ("0", "1", "2", "3"):
        assert f"\n  {code}  " in out
    assert driver.EXIT_CODES in out


def test_trial_help_lists_the_choices_of_every_key_that_has_them(capsys):
    from flosssweep.config import SCHEMA

    try:
        cli.main(["trial", "--help"])
    except SystemExit as done:
        assert done.code == 0
    out = capsys.readouterr().out
    for key, field in SCHEMA.items():
        if field.choices:
            line = next(line for line in out.splitlines() if line.strip().startswith(key + " "))
            assert "|".join(map(str, field.choices)) in line, key
    assert "one of none|pre|during|pre+during|regularizer" in out and "one of float32|float64" in out


def test_run_dry_run_shows_the_whole_resolved_base():
    done = subprocess.run(
        [sys.executable, "-m", "flosssweep.cli", "run", "quickstart", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:3] == ["*", "model.hidden", "32"] for line in lines)
    assert any(line.split()[:2] == ["floss.dtype", "float32"] for line in lines)  # a default, unmarked
    assert any(line.split()[:3] == ["task.delay", "varied:", "grid"] for line in lines)
