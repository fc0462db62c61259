"""One way for sub-commands to turn expected failures into a message and an exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_reporting_errors(name: str, run: Callable[[], int], errors: tuple[type[BaseException], ...],
                         interrupted: str = "interrupted") -> int:
    """``run()``; an expected error (``errors``, plus missing data, a bad checkpoint or an
    unavailable device) prints ``capsviewer NAME: error: …`` and gives 2, Ctrl-C gives 130."""
    from capsviewer.data import DatasetUnavailable
    from capsviewer.training import CheckpointError, DeviceUnavailable

    try:
        return run()
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    except (DatasetUnavailable, CheckpointError, DeviceUnavailable, *errors) as error:
        print(f"capsviewer {name}: error: {error}", file=sys.stderr)
        return 2
