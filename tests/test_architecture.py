import shutil
import subprocess
import sys

import pytest

from conftest import REPO

CORE = ["capsviewer.maths", "capsviewer.models", "capsviewer.data", "capsviewer.training",
        "capsviewer.analysis.toy_routing", "capsviewer.cli"]


def test_core_imports_no_qt():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE)
            + "bad = [m for m in sys.modules if m.split('.')[0] in "
              "{'PySide6', 'shiboken6', 'pyqtgraph', 'superqt', 'qtpy', 'PyQt5', 'PyQt6'}]\n"
            + "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_linter_contract_holds():
    exe = shutil.which("lint-imports") or str(REPO / ".venv" / "bin" / "lint-imports")
    if not shutil.which(exe):
        pytest.skip("import-linter is not installed")
    result = subprocess.run([exe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
