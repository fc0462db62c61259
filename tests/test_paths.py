"""Every user folder comes from capsviewer.paths, one way: on Windows datasets, models and caches
share %LOCALAPPDATA%\\capsviewer, and a model the app trains is where discovery looks."""

from pathlib import Path

import platformdirs
import platformdirs.windows
import pytest

from capsviewer import paths
from capsviewer.data import default_data_root
from capsviewer.training.model_files import model_dirs

FOLDERS = {"CSIDL_LOCAL_APPDATA": "/windows/Local", "CSIDL_APPDATA": "/windows/Roaming"}


@pytest.fixture
def windows(monkeypatch):
    """platformdirs answering as it does on Windows (its folder look-up faked)."""
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.windows.Windows)
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", FOLDERS.__getitem__)


def test_windows_keeps_every_folder_under_one_capsviewer_folder(windows):
    root = Path("/windows/Local/capsviewer")
    assert paths.datasets_dir() == default_data_root() == root / "datasets"
    assert paths.checkpoints_dir() == root / "checkpoints"
    assert paths.cache_dir("predictions").parent.parent == root  # …\capsviewer\Cache
    assert paths.settings_file().parent == root


def test_a_model_trained_in_the_app_is_found_at_the_next_launch(windows, qapp):
    from capsviewer.app.views.training_view import default_checkpoint

    assert default_checkpoint("cnn", "mnist").parent in model_dirs()


def test_the_folders_follow_xdg_on_linux(monkeypatch, tmp_path):
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.unix.Unix)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert paths.datasets_dir() == tmp_path / "data" / "capsviewer" / "datasets"
    assert paths.cache_dir("predictions") == tmp_path / "cache" / "capsviewer" / "predictions"
    assert paths.settings_file() == tmp_path / "config" / "capsviewer" / "settings.ini"
