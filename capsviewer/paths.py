"""Every folder capsviewer keeps for a user, decided here and nowhere else.

One platformdirs call style for all of them: ``appauthor=False``, so on Windows datasets,
checkpoints and caches share ``%LOCALAPPDATA%\\capsviewer`` (platformdirs' default would nest a
second ``capsviewer`` folder for the "author", and a folder built the other way would miss it).
On Linux: ``~/.local/share/capsviewer``, ``~/.cache/capsviewer``, ``~/.config/capsviewer``.
The shipped models and resources are package data, not user folders; they are not here.
"""

from __future__ import annotations

from pathlib import Path

APP = "capsviewer"


class _PlatformDirs:
    """platformdirs, imported on first use: the core (training on a GPU machine, say) must
    import where it is not installed."""

    def __getattr__(self, name: str):
        import platformdirs

        return getattr(platformdirs, name)


platformdirs = _PlatformDirs()


def data_dir() -> Path:
    """The user's capsviewer data folder: datasets and trained checkpoints live under it."""
    return platformdirs.user_data_path(APP, appauthor=False)


def datasets_dir() -> Path:
    """Where missing datasets are downloaded (unless ``--data-root`` or $CAPSVIEWER_DATA)."""
    return data_dir() / "datasets"


def checkpoints_dir() -> Path:
    """Where the app writes the checkpoints it trains, and one place model discovery looks."""
    return data_dir() / "checkpoints"


def cache_dir(name: str) -> Path:
    """A cache folder for ``name`` (test-set predictions, unpacked datasets): safe to delete."""
    return platformdirs.user_cache_path(APP, appauthor=False) / name


def settings_file() -> Path:
    """The app's settings (theme, window geometry, last folder), an INI file."""
    return platformdirs.user_config_path(APP, appauthor=False) / "settings.ini"
