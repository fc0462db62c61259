import gc
import os
import sys
import tempfile
from pathlib import Path

import pytest

# Qt tests run headless; pyqtgraph must bind PySide6 (it prefers PyQt6 when both exist).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
# Caches the app writes (test-set predictions) go to a scratch folder, not the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="capsviewer-test-cache-")

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """The MNIST copy tests use: $CAPSVIEWER_DATA, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("CAPSVIEWER_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate).resolve()  # tests may change the working folder
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide MNIST: set CAPSVIEWER_DATA (see README)")
        pytest.skip("MNIST not found: set CAPSVIEWER_DATA to a folder holding MNIST/raw")
    return root


@pytest.fixture(scope="session")
def mnist_train(data_root):
    from capsviewer.data import load_dataset

    return load_dataset("mnist", train=True, root=data_root, download=False)


@pytest.fixture(scope="session")
def mnist_test(data_root):
    from capsviewer.data import load_dataset

    return load_dataset("mnist", train=False, root=data_root, download=False)


@pytest.fixture(autouse=True)
def gui_thread_garbage_collection(request):
    """In Qt tests, collect garbage on the GUI thread only, as the app does: otherwise a worker
    thread can collect a cycle holding Qt objects of an earlier test and delete them from the
    wrong thread ("Timers cannot be started from another thread")."""
    if not {"qtbot", "qapp"} & set(request.fixturenames):
        yield
        return
    gc.disable()  # the previous Qt test collected at its end
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a QThread (compute lane or thread-pool worker) running."""
    yield
    if "PySide6.QtCore" not in sys.modules:
        return
    from PySide6.QtCore import QThreadPool

    from capsviewer.app.compute import running_lanes

    pool = QThreadPool.globalInstance()
    pool.waitForDone(1000)  # a worker may still be returning from its last signal
    lanes = running_lanes()
    busy = pool.activeThreadCount()
    for lane in lanes:
        lane.shutdown(2000)
    assert not lanes and busy == 0, (
        f"test left threads running: lanes {[lane.objectName() for lane in lanes]}, "
        f"{busy} thread-pool worker(s)"
    )


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """Seeded, untrained CapsNet and CNN checkpoints of the real architectures (paths)."""
    import torch

    from capsviewer.models import build_model
    from capsviewer.training import save_checkpoint

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name in ("capsnet", "cnn"):
        torch.manual_seed(0)
        model = build_model(name)
        paths[name] = save_checkpoint(folder / f"{name}-mnist.safetensors", model,
                                      {"dataset": {"name": "mnist"}, "epoch": 0})
    return paths


@pytest.fixture
def offline(monkeypatch) -> list:
    """No network: every download fails at once. Returns the URLs that were tried."""
    import urllib.error
    import urllib.request

    attempts = []

    def refuse(url, timeout):
        attempts.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return attempts


@pytest.fixture
def mnist_mirror(monkeypatch, data_root):
    """MNIST's test-set files served as torchvision's mirrors would (gzipped, with MD5 sums),
    from the local copy: downloads run without a network. Returns the files (name → bytes,
    editable) and the list of URLs requested."""
    import gzip
    import hashlib
    import io
    import urllib.request

    from capsviewer.data import DATASETS

    raw = data_root / "MNIST" / "raw"
    served = {f"{name}.gz": gzip.compress((raw / name).read_bytes(), mtime=0)
              for name in DATASETS["mnist"].split_files(train=False)}
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in served.items()}
    monkeypatch.setattr(type(DATASETS["mnist"]), "sources",
                        lambda spec, file: ([f"https://mirror.test/{file}.gz"], md5[f"{file}.gz"]))
    requested = []

    class Response(io.BytesIO):
        def __init__(self, url):
            requested.append(url)
            super().__init__(served[url.rsplit("/", 1)[1]])
            self.headers = {"Content-Length": str(len(self.getvalue()))}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(url))
    return served, requested
