"""The Qt binding itself: PySide6 6.12.0 dropped a reference to None on every call returning
nothing, which aborts Python 3.11 ("none_dealloc") after long sessions."""

import sys

from PySide6.QtCore import QObject


def test_calls_returning_nothing_keep_none_alive():
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(1000):
        probe.setObjectName("probe")
    assert sys.getrefcount(None) - before > -10
