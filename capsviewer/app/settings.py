"""The app's settings file, where :mod:`capsviewer.paths` puts it (an INI file, the same on
every platform)."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from capsviewer import paths


def user_settings() -> QSettings:
    path = paths.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)
