"""A new user's first launch: a plain install (a wheel) carries the models, icons and a sample
of the MNIST test set; with no dataset on the machine and no network the window opens on that
sample without a dialog, and ``capsviewer export`` works on it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import capsviewer
from capsviewer.data import SAMPLE_SIZE, load_dataset, load_sample, load_test_set

REPO = Path(__file__).resolve().parents[1]
MNIST_MODELS = {"capsnet", "cnn", "em-capsnet"}  # the shipped MNIST models, by architecture
SHIPPED = ("capsviewer/resources/models/capsnet-mnist.safetensors",
           "capsviewer/resources/models/cnn-mnist.safetensors",
           "capsviewer/resources/models/em-capsnet-mnist.safetensors",
           "capsviewer/resources/icons/capsviewer.svg",
           "capsviewer/resources/styles/capsviewer.qss",
           "capsviewer/resources/data/mnist-test-1000.safetensors")


@pytest.fixture
def no_dataset(tmp_path, monkeypatch, offline):
    """No MNIST anywhere capsviewer looks, an empty home, and no network (a download fails).
    Returns the URLs a download tried."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("CAPSVIEWER_DATA", "CAPSVIEWER_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    return offline


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``pip wheel`` builds from the package sources, offline (no build isolation)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "capsviewer", source / "capsviewer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("capsviewer-*.whl")
    return path


def test_the_wheel_holds_the_models_icons_and_test_sample(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    assert len([n for n in names if n.startswith("capsviewer/resources/samples/")]) == 3
    for name in SHIPPED:  # the same bytes as in the checkout (a checkpoint is never re-saved)
        assert zipfile.ZipFile(wheel).read(name) == (REPO / name).read_bytes(), name
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_unpacked_wheel_finds_its_models_and_sample_from_anywhere(wheel, tmp_path):
    """Outside the checkout, with an empty home and no data: the installed package finds both
    shipped models and loads the sample test set."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    code = (
        "import capsviewer, json\n"
        "from capsviewer.data import load_test_set\n"
        "from capsviewer.training.model_files import find_models\n"
        "test = load_test_set('mnist')\n"
        "print(json.dumps({'package': capsviewer.__file__,\n"
        "  'models': {k: str(v) for k, v in find_models('mnist').items()},\n"
        "  'images': len(test), 'sample': test.is_sample, 'label0': int(test.labels[0])}))\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("CAPSVIEWER_DATA", "CAPSVIEWER_MODELS", "PYTHONPATH")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(site)  # the wheel's copy, not the checkout
    assert set(found["models"]) == MNIST_MODELS
    assert all(Path(p).is_relative_to(site) for p in found["models"].values())
    assert found["images"] == SAMPLE_SIZE and found["sample"] is True and found["label0"] == 7
    version = subprocess.run([sys.executable, "-m", "capsviewer", "--version"], cwd=elsewhere,
                             env=env, capture_output=True, text=True, timeout=120)
    assert version.stdout.strip() == f"capsviewer {capsviewer.__version__}"


def test_the_sample_is_the_first_thousand_test_images(mnist_test):
    sample = load_sample("mnist")
    assert sample.is_sample and sample.images.dtype == torch.uint8
    assert torch.equal(sample.images, mnist_test.images[:SAMPLE_SIZE])
    assert torch.equal(sample.labels, mnist_test.labels[:SAMPLE_SIZE])
    assert sample.subset(10).is_sample


def test_the_test_set_is_the_full_one_when_found_else_the_sample(no_dataset, tmp_path, data_root):
    assert len(load_test_set("mnist", data_root)) == 10_000
    assert not load_test_set("mnist", data_root).is_sample
    sample = load_test_set("mnist", tmp_path)
    assert sample.is_sample and len(sample) == SAMPLE_SIZE and not no_dataset  # no download
    with pytest.raises(Exception, match="MNIST test set is not available: the download failed"):
        load_test_set("mnist", tmp_path, download=True, images_needed=SAMPLE_SIZE + 1)
    assert no_dataset and all("t10k" in url for url in no_dataset)  # never the training set


def test_the_window_opens_on_the_sample_without_a_dialog(qtbot, no_dataset, tmp_path):
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QMessageBox

    from capsviewer.app.main_window import MainWindow, default_models

    models = default_models()
    assert set(models) == MNIST_MODELS
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, settings=settings, show_errors=True, predict_test_set=False)
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.inspection is not None and window.is_idle()
                        and set(window.session.models) == MNIST_MODELS, timeout=60000)
        sample = load_sample("mnist")
        assert window.image.source == "test #0" and window.image.label == 7
        assert np.array_equal(window.image.pixels, sample.images[0, 0].numpy())
        assert window.inspection.prediction == 7
        assert window.session.test_set.is_sample
        assert "1,000" in window.data_label.text() and "Download" in window.data_label.text()
        assert window.download_action.isEnabled()
        assert not window.errors and QApplication.activeModalWidget() is None
        assert not [box for box in window.findChildren(QMessageBox) if box.isVisible()]
        assert not no_dataset  # opening the window downloads nothing
    finally:
        window.shutdown()


def test_a_dataset_without_its_test_set_is_a_note_not_a_dialog(qtbot, no_dataset, tmp_path,
                                                               monkeypatch):
    """Fashion-MNIST ships no sample: switching to it without its files empties the browser
    and says so in the status bar; no dialog, no download."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from capsviewer.app.main_window import MainWindow
    from capsviewer.data import datasets

    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow({}, settings=settings, show_errors=True, predict_test_set=False)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.image is not None and window.is_idle(), timeout=20000)
        window.set_dataset("fashion-mnist")
        qtbot.waitUntil(lambda: window.is_idle() and window.data_label.text() == "no test set",
                        timeout=20000)
        assert "The Fashion-MNIST test set is not available" in window.status_text.text()
        assert window.input_view._position.text() == "No test set loaded"
        assert window.download_action.isEnabled() and not window.errors and not no_dataset
        assert QApplication.activeModalWidget() is None
    finally:
        window.shutdown()


def test_file_download_replaces_the_sample_with_the_full_test_set(qtbot, tmp_path,
                                                                  mnist_mirror, monkeypatch):
    """File ▸ Download the full test set fetches the two test files in the background, with
    progress in the status bar, and the browser moves to all 10,000 images."""
    from PySide6.QtCore import QSettings

    from capsviewer.app.main_window import MainWindow

    served, requested = mnist_mirror
    monkeypatch.delenv("CAPSVIEWER_DATA", raising=False)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow({}, data_root=str(tmp_path / "data"), settings=settings,
                        show_errors=False, predict_test_set=False)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.image is not None and window.is_idle(), timeout=20000)
        assert window.session.test_set.is_sample and not requested
        shown = []
        window.session.download_progress.connect(lambda _: shown.append(window.status_text.text()))
        window.download_action.trigger()
        qtbot.waitUntil(lambda: len(window.session.test_set) == 10_000 and window.is_idle(),
                        timeout=20000)
        assert [url.rsplit("/", 1)[1] for url in requested] == list(served)
        assert shown and shown[-1].startswith("Downloading t10k-labels-idx1-ubyte.gz")
        assert not window.session.test_set.is_sample and not window.download_action.isEnabled()
        assert window.data_label.text() == "MNIST: 10,000 test images" and not window.errors
        assert (tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
        assert not list((tmp_path / "data" / "MNIST" / "raw").glob("train-*"))
    finally:
        window.shutdown()


def test_export_works_offline_on_the_sample_and_stays_small(qapp, no_dataset, tmp_path, capsys):
    from capsviewer.cli import main

    out = tmp_path / "figures"
    assert main(["export", "--index", "0", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "for test #0" in captured.out and "1,000-image sample" in captured.err
    files = list(out.iterdir())
    assert sum(f.stat().st_size for f in files) < 20_000_000
    cloud = (out / "routing-vote-cloud-plot.svg").read_text()
    assert "<image" not in cloud and cloud.count("<path") >= 1152  # a vector shape per vote
    assert not no_dataset

    assert main(["export", "--index", "5000", "--out", str(tmp_path / "more")]) == 2
    error = capsys.readouterr().err
    assert "MNIST test set is not available" in error and "Traceback" not in error
    assert "You can still draw" not in error  # command-line wording, not the app's
    assert main(["export", "--index", "-1", "--out", str(tmp_path / "none")]) == 2
    assert "count from 0" in capsys.readouterr().err


def test_the_test_split_alone_is_enough(data_root, tmp_path):
    """Browsing and evaluation need the test set only: a data root holding just its two files
    serves, without the training set."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(data_root / "MNIST" / "raw" / name, raw / name)
    test = load_dataset("mnist", train=False, root=tmp_path, download=False)
    assert len(test) == 10_000 and not test.is_sample
