import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO

CORE = ["capsviewer.maths", "capsviewer.models", "capsviewer.data", "capsviewer.training",
        "capsviewer.analysis", "capsviewer.report", "capsviewer.paths", "capsviewer.cli"]
QT_USERS = {"capsviewer.app", "capsviewer.cli"}
ENTRY_POINTS = {"capsviewer.__init__", "capsviewer.__main__"}  # they reach Qt only via the CLI


def test_core_and_command_line_import_no_qt():
    """The CLI may import Qt (the app and export), but only when those commands run."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE)
            + "bad = [m for m in sys.modules if m.split('.')[0] in "
              "{'PySide6', 'shiboken6', 'pyqtgraph', 'superqt', 'qtpy', 'PyQt5', 'PyQt6'}]\n"
            + "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def contracts() -> list[dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_every_module_but_the_app_and_the_cli_is_under_the_qt_contract():
    modules = {f"capsviewer.{p.stem}" for p in (REPO / "capsviewer").iterdir()
               if p.suffix == ".py" or (p / "__init__.py").exists()}
    qt_free = next(c for c in contracts() if c["name"].startswith("Only the app"))
    assert set(qt_free["source_modules"]) == modules - QT_USERS - ENTRY_POINTS


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts())} kept, 0 broken" in result.stdout
