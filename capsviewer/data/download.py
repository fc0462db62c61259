"""Download one file over HTTP(S) with progress, checked against its MD5 sum.

Written here rather than through torchvision's ``download_url`` because the app shows the
progress and can cancel: torchvision only draws a tqdm bar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 16
TIMEOUT_SECONDS = 30

Progress = Callable[[int, int, str], None]  # bytes done, bytes in all (0: unknown), file name


class DownloadError(OSError):
    """No URL gave the file; the message has each URL's reason."""


class DownloadCancelled(Exception):
    pass


def download(urls: list[str], target: Path, md5: str | None = None,
             progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None) -> Path:
    """Fetch ``target`` from the first of ``urls`` that answers, through a ``.part`` file that
    becomes ``target`` only once complete and, given ``md5``, checked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    for url in urls:
        try:
            return _fetch(url, target, md5, progress, should_stop)
        except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
            reasons.append(f"{url}: {getattr(error, 'reason', error)}")
    raise DownloadError("; ".join(reasons))


def _fetch(url, target: Path, md5, progress, should_stop) -> Path:
    import urllib.request  # 40 ms of imports: only when downloading

    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, \
                open(partial, "wb") as out:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            while chunk := response.read(CHUNK):
                if should_stop is not None and should_stop():
                    raise DownloadCancelled
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total, target.name)
        if md5 is not None and digest.hexdigest() != md5:
            raise ValueError(f"the file's MD5 sum is {digest.hexdigest()}, expected {md5}")
        return partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
