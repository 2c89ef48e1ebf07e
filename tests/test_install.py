"""The README's install resolves the build it promises: resolved by pip itself (`--dry-run --report`)
against the package registry, with pip's configuration and the local wheel folder set aside, the way a
fresh machine without that folder would see it.

- PyPI's plain `torch==2.13.0` is the CUDA build (the check can fail: this is what the README used to say);
- the README's CPU pin can never resolve a CUDA build (PyPI has no `+cpu` release: it resolves from
  PyTorch's CPU index where that is reachable, from a local wheel folder as in CI, or not at all);
- the project's install, after torch, adds no torch and takes exactly the versions of constraints.txt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_PACKAGES = re.compile(r"^(nvidia-|cuda-|triton$)")
# The CPU command of the README: the pin and the index it names.
CPU_INSTALL = re.compile(r'pip install "(torch==[^"]+\+cpu)" --extra-index-url (\S+)')

pytestmark = pytest.mark.slow


def resolve(tmp_path: Path, *requirements: str, find_links: str = "", extra: tuple[str, ...] = ()) -> dict:
    """What `pip install` would install into a fresh environment, from pip's own resolver."""
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": find_links, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--retries", "0", "--timeout", "20", "--report", str(report), *extra, *requirements]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": done.stderr}
    return {
        canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def registry_reachable() -> bool:
    probe = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "six==1.16.0"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=60, env=os.environ | {"PIP_CONFIG_FILE": os.devnull})
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@pytest.fixture(scope="module", autouse=True)
def registry():
    if not registry_reachable():
        pytest.skip("the package registry (PyPI) is not reachable from this machine")


def readme_cpu_install() -> tuple[str, str]:
    found = CPU_INSTALL.findall((ROOT / "README.md").read_text())
    assert found, "the README has no CPU torch install line"
    assert len(set(found)) == 1, f"the README's CPU install lines disagree: {set(found)}"
    return found[0]


def test_pypi_plain_torch_is_the_cuda_build(tmp_path):
    resolved = resolve(tmp_path, "torch==2.13.0")
    assert "error" not in resolved, resolved.get("error")
    cuda = sorted(name for name in resolved if CUDA_PACKAGES.match(name))
    assert resolved["torch"] == "2.13.0" and len(cuda) >= 10, cuda


def test_the_readme_cpu_pin_never_resolves_cuda(tmp_path):
    pin, index = readme_cpu_install()
    from_registry = resolve(tmp_path, pin, extra=("--extra-index-url", index))
    if "error" in from_registry:
        # PyTorch's index unreachable (CI): PyPI alone has nothing that satisfies the pin.
        assert "No matching distribution found for " + pin in from_registry["error"], from_registry["error"]
    else:
        assert from_registry["torch"].endswith("+cpu")
        assert not [name for name in from_registry if CUDA_PACKAGES.match(name)]
    wheels = os.environ.get("PIP_FIND_LINKS", "")
    if not any(Path(folder).glob("torch-*+cpu-*.whl") for folder in wheels.split() if folder):
        return
    from_folder = resolve(tmp_path, pin, find_links=wheels)
    assert from_folder.get("torch", "").endswith("+cpu"), from_folder
    assert not [name for name in from_folder if CUDA_PACKAGES.match(name)], from_folder


def test_the_project_install_adds_no_torch_and_takes_the_constraints(tmp_path):
    constraints = ROOT / "constraints.txt"
    pins = dict(
        line.split("==", 1)
        for line in constraints.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    pins = {canonical(name): v for name, v in pins.items()}
    assert "torch" not in pins, "constraints.txt must leave torch to the README's first command"
    # The torch already installed (the README's first command), held where it is.
    held = tmp_path / "installed-torch.txt"
    held.write_text(f"torch=={version('torch')}\n")
    _, cpu_index = readme_cpu_install()
    resolved = resolve(
        tmp_path,
        "-e",
        ".[test]",
        "-c",
        str(constraints),
        "-c",
        str(held),
        find_links=os.environ.get("PIP_FIND_LINKS", ""),
        extra=("--extra-index-url", cpu_index) if version("torch").endswith("+cpu") else (),
    )
    assert "error" not in resolved, resolved.get("error")
    assert resolved.pop("torch") == version("torch")
    assert not [name for name in resolved if CUDA_PACKAGES.match(name)]
    resolved.pop("flosssweep")
    unpinned = sorted(set(resolved) - set(pins))
    assert not unpinned, f"constraints.txt does not pin {unpinned}"
    moved = {name: (v, pins[name]) for name, v in resolved.items() if v != pins[name]}
    assert not moved, f"resolved versions differ from constraints.txt: {moved}"
