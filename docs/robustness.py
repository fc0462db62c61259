"""Development script: the robustness report of the shipped models, written into docs/ and
into docs/results.md between its two markers.

    python docs/robustness.py --out docs --readme docs/results.md --data-root ../shared/data

Takes the options of ``capsviewer report`` (models, dataset, subset, seed, batch size, device)
plus ``--out`` (default docs/) and ``--readme`` (default docs/results.md, ``''`` for none).
The text between ``<!-- robustness:start -->`` and ``<!-- robustness:end -->`` is replaced by a
line on how the report was made, its tables and its figure, linked relative to the README.
Users make their own reports with ``capsviewer report --out DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capsviewer.cli import report  # noqa: E402
from capsviewer.cli.common import (  # noqa: E402
    CommandError,
    HelpFormatter,
    run_command,
    write_file,
)

README_START = "<!-- robustness:start -->"
README_END = "<!-- robustness:end -->"
PROG = "python docs/robustness.py"
DEFAULT_OUT = Path("docs")
DEFAULT_README = Path("docs/results.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    report.add_options(parser)
    parser.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT,
                        help="folder for robustness.md, .png and .json")
    parser.add_argument("--readme", metavar="PATH", default=str(DEFAULT_README),
                        help=f"replace the text between {README_START} and {README_END} here "
                        "('' for no README)")
    parser.set_defaults(run=run, prog=PROG, interrupted="interrupted; nothing was written")
    return parser


def run(args) -> int:
    from capsviewer.report.text import markdown_tables

    readme = Path(args.readme) if args.readme else None
    if readme is not None and replace_between_markers(readme.read_text(encoding="utf-8"),
                                                      "") is None:
        raise CommandError(f"{readme} has no {README_START} … {README_END} markers (in that "
                           "order); add them where the tables should go")
    command = report.command_line(args, PROG, DEFAULT_OUT)
    if readme is not None and readme != DEFAULT_README:
        command += f" --readme {args.readme}"
    measured = report.measure(args, command)
    markdown_path, figure_path, json_path = report.write(measured, args.out)
    print()
    print(markdown_tables(measured))
    print(f"{measured.seconds:.1f} s; wrote {markdown_path}, {figure_path}, {json_path}")
    if readme is not None:
        update_readme(readme, readme_section(measured, readme, markdown_path, figure_path))
        print(f"updated the robustness section of {readme}")
    return 0


def readme_section(measured, readme: Path, markdown_path: Path, figure_path: Path) -> str:
    """What goes between the README markers: a line on how it was made, the tables, the figure,
    with links relative to the README."""
    from capsviewer.report.text import markdown_tables

    def link(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), readme.resolve().parent)).as_posix()

    names = ", ".join(
        f"{m.name} ({100 * m.stated_test_accuracy:.2f} % stated)" if m.stated_test_accuracy
        is not None else m.name for m in measured.models)
    return (
        f"Measured by `{measured.command}` on {measured.images:,} {measured.dataset} test images "
        f"({measured.created[:10]}, {measured.device}, {measured.seconds:.0f} s; models: {names}). "
        f"Details, conditions and caveats: [{markdown_path.name}]({link(markdown_path)}).\n\n"
        + markdown_tables(measured)
        + "\n![Accuracy against rotation, shift and random affine transforms]"
        + f"({link(figure_path)})\n"
    )


def replace_between_markers(text: str, content: str,
                            start: str = README_START, end: str = README_END) -> str | None:
    """``text`` with everything between the markers replaced by ``content`` (markers kept);
    None when either marker is missing or they are out of order."""
    first = text.find(start)
    last = text.find(end, first + len(start)) if first >= 0 else -1
    if first < 0 or last < 0:
        return None
    return text[:first + len(start)] + "\n" + content.strip("\n") + "\n" + text[last:]


def update_readme(path: Path, content: str) -> bool:
    """Replace the marked section of ``path``; False (file untouched) without the markers."""
    text = Path(path).read_text(encoding="utf-8")
    updated = replace_between_markers(text, content)
    if updated is None:
        return False
    if updated != text:
        write_file(path, updated.encode("utf-8"))
    return True


if __name__ == "__main__":
    raise SystemExit(run_command(build_parser().parse_args()))
