"""Every module the documents and docstrings name exists: a `flosssweep/...py` path, a dotted
`flosssweep.x.y` name (a module, or a name inside one), a `tests/...py` path."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "search_spaces").glob("*.yaml")])
SOURCES = sorted((ROOT / "flosssweep").rglob("*.py"))
PATH = re.compile(r"(?<![\w/.])((?:flosssweep|tests)/[\w/]*\.py)\b")
DOTTED = re.compile(r"(?<![\w/.])(flosssweep(?:\.\w+)+)")


def tag_names() -> set[str]:
    """MLflow tags that read like dotted names (`flosssweep.role`): not modules."""
    from flosssweep import names

    strings = {v for v in vars(names).values() if isinstance(v, str)}
    counted = names.SUMMARY_TAGS + names.OUTCOME_COUNTS
    return {v for v in strings if v.startswith(names.TAG_PREFIX)} | {names.TAG_PREFIX + c for c in counted}


def resolves(dotted: str) -> bool:
    """A module, or an attribute of the longest module prefix that imports (or an MLflow tag)."""
    if dotted in tag_names():
        return True
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def cited(text: str) -> tuple[set[str], set[str]]:
    return set(PATH.findall(text)), {d.rstrip(".") for d in DOTTED.findall(text)}


@pytest.mark.parametrize("document", DOCUMENTS + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_module_exists(document):
    paths, dotted = cited(document.read_text())
    missing = sorted(p for p in paths if not (ROOT / p).exists()) + sorted(d for d in dotted if not resolves(d))
    assert not missing, f"{document.relative_to(ROOT)} names what does not exist: {missing}"


def test_the_check_finds_a_missing_module():
    paths, dotted = cited("see `flosssweep/stf.py`, `flosssweep.trainer.Trial` and flosssweep.report.make_report.")
    assert paths == {"flosssweep/stf.py"} and not (ROOT / "flosssweep/stf.py").exists()
    assert dotted == {"flosssweep.trainer.Trial", "flosssweep.report.make_report"}
    assert not resolves("flosssweep.trainer.Trial") and resolves("flosssweep.report.make")
