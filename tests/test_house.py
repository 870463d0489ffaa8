"""The house rules: the library's imports go one way (import-linter contracts in
pyproject.toml), every top-level module is placed in those contracts, and ruff is clean."""
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import rnnlab

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = {"cells", "kernels", "layers", "models"}


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]


def test_every_module_is_placed_in_the_import_contracts():
    forbidden = next(c for c in _contracts() if c["type"] == "forbidden")
    placed = {m.split(".")[1] for m in forbidden["forbidden_modules"]} | LIBRARY
    modules = {m.name for m in pkgutil.iter_modules(rnnlab.__path__)} | {"__main__"}
    assert modules - placed == set(), "add new application modules to pyproject.toml"


def test_imports_go_one_way():
    from importlinter import cli
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def test_import_rnnlab_loads_no_application():
    code = ("import sys, rnnlab; apps = [m for m in sys.modules if m.startswith('rnnlab.') "
            "and m.split('.')[1] not in %r]; print(apps); sys.exit(bool(apps))" % (LIBRARY,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (make test installs it from requirements.txt)")
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
