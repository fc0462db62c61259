"""README is for users: its Python example runs as written, its test command is CI's."""

import contextlib
import io
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_core_example_runs_and_prints_what_readme_says():
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("label 7 ‖v_j‖ [0.03 0.01")
    lengths = [float(v) for v in lines[0].split("[")[1].rstrip("]").split()]
    assert lengths[7] == 0.95 and max(lengths[:7] + lengths[8:]) <= 0.03
    largest = [float(re.search(r"largest c_ij ([\d.]+)", line).group(1)) for line in lines[1:]]
    assert largest == [0.100, 0.359, 0.849]  # the figures README quotes below the example
    assert "largest c_ij 0.100, 0.359, 0.849" in README


def test_readme_is_short_and_its_test_command_is_what_ci_runs():
    assert len(README.splitlines()) <= 150
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert f"\n    {ci}\n" in README
    assert "\n    python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/capsviewer\n" in README
