"""Getting registry files onto this machine: hashed downloads, local imports, verification.

Downloads go through ``pooch`` (the field's library for pinned, hashed downloads): each file is
streamed to a temporary file next to its destination, its sha256 is checked, and only then is it
moved into place, so a cut connection, a truncated or a corrupted download is never used and
never replaces a good copy. A file rebuilt from an archive (:mod:`circuit_atlas.data.derive`)
downloads the archive the same way (its own sha256 pinned) into a temporary folder, rebuilds
the file there, checks the file's sha256 and only then moves it into place. A local copy of a
data directory (``../shared/data`` on a machine without network) is imported by
:func:`import_from`, which checks every hash before it copies anything.

Files land in the *data home* (:func:`circuit_atlas.data.resolve.data_home`): ``--data-dir``,
``$CIRCUIT_ATLAS_DATA``, else the user cache. Progress bars are the caller's choice
(``progressbar=True`` shows one ``tqdm`` bar per download on stderr).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from circuit_atlas.data.derive import derive
from circuit_atlas.data.registry import REGISTRY, DataFile
from circuit_atlas.data.resolve import (
    FETCH_COMMAND,
    data_home,
    locate,
    sha256_file,
    verify_file,
)
from circuit_atlas.errors import DataFetchError, DataIntegrityError, DataNotFoundError

__all__ = ["FetchResult", "FileStatus", "ensure", "fetch", "import_from", "verify"]

logger = logging.getLogger(__name__)

Action = Literal["cached", "downloaded", "imported"]
"""What happened to a file: it was already there and verified, downloaded, or copied in."""

TIMEOUT_S = 60.0
"""Seconds a download may wait for the server before it fails."""


@dataclass(frozen=True)
class FetchResult:
    """One registry file after :func:`fetch` or :func:`import_from`.

    Attributes:
        entry: The registry entry.
        path: The verified copy in the data home.
        action: What happened (:data:`Action`).
    """

    entry: DataFile
    path: Path
    action: Action


@dataclass(frozen=True)
class FileStatus:
    """One registry file as found by :func:`verify`.

    Attributes:
        entry: The registry entry.
        path: Where it was looked for.
        status: ``ok`` (the registry's bytes), ``missing``, or ``bad`` (another sha256).
        actual: The sha256 found (``bad`` and ``ok``), else None.
    """

    entry: DataFile
    path: Path
    status: Literal["ok", "missing", "bad"]
    actual: str | None = None


def _entries(files: Iterable[DataFile] | None) -> list[DataFile]:
    return list(REGISTRY if files is None else files)


def _is_verified(entry: DataFile, path: Path) -> bool:
    return path.is_file() and sha256_file(path) == entry.sha256


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Keep pooch's INFO lines ("Downloading data from ...") out of the library's output."""
    import pooch

    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


class _HashingDownloader:
    """pooch's HTTP downloader that also records the sha256 of what it received."""

    def __init__(self, progressbar: bool | object) -> None:
        import pooch

        self._inner = pooch.HTTPDownloader(progressbar=progressbar, timeout=TIMEOUT_S)
        self.actual: str | None = None

    def __call__(self, url: str, output_file: str, pooch_instance: object) -> None:
        self._inner(url, output_file, pooch_instance)
        self.actual = sha256_file(output_file)


def _url(entry: DataFile, mirror: str | None) -> str:
    return entry.source.url if mirror is None else f"{mirror.rstrip('/')}/{entry.name}"


def _retrieve(name: str, url: str, sha256: str, target: Path, progressbar: bool | object) -> None:
    """pooch-download ``url`` to ``target`` (atomic, hash-checked), with typed errors."""
    import pooch
    import requests

    downloader = _HashingDownloader(progressbar)
    try:
        with _quiet_pooch():
            pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=target.name,
                           path=target.parent, downloader=downloader)  # fmt: skip
    except requests.RequestException as exc:
        raise DataFetchError(
            f"could not download {name!r} from {url}: {exc}. Nothing was kept. On a machine "
            f"without network use `{FETCH_COMMAND} --from DIR` with a copy of the data directory."
        ) from exc
    except ValueError as exc:  # pooch: the downloaded bytes do not have the known hash
        raise DataIntegrityError(
            name, url, sha256, downloader.actual or "unknown",
            "The download was deleted; nothing was kept (a truncated or altered file?)",
        ) from exc


def _download(entry: DataFile, dest: Path, url: str, progressbar: bool | object) -> Path:
    target = dest / entry.name
    if entry.derived_from is None or url != entry.source.url:  # the file itself (or a mirror)
        _retrieve(entry.name, url, entry.sha256, target, progressbar)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        archive = Path(tmp) / Path(entry.source.path).name
        _retrieve(f"{entry.name} (archive {entry.source.path})", url,
                  entry.derived_from.sha256, archive, progressbar)  # fmt: skip
        built = derive(entry, archive, Path(tmp) / target.name)
        verify_file(entry, built, f"rule {entry.derived_from.rule!r} did not rebuild the file; "
                    "nothing was kept")  # fmt: skip
        os.replace(built, target)
    return target


def fetch(
    files: Iterable[DataFile] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    progressbar: bool | object = False,
    on_file: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Download registry files into the data home, each checked against its sha256.

    A file already in the data home with the right hash is not downloaded again, so a second
    run works without network.

    Args:
        files: Registry entries (default: the whole registry).
        data_dir: The explicit data directory (the data home; default ``$CIRCUIT_ATLAS_DATA``,
            then the cache).
        mirror: Base URL of a mirror laid out like a data directory (``<mirror>/<name>``);
            default: each file's pinned public source.
        progressbar: ``True`` for a ``tqdm`` bar per download (stderr), or a tqdm-like object.
        on_file: Called with each :class:`FetchResult` as it completes.

    Returns:
        One :class:`FetchResult` per file, in order.

    Raises:
        DataFetchError: If a download fails (network, HTTP error, cut connection).
        DataIntegrityError: If downloaded bytes have another sha256 (nothing is kept).
    """
    dest = data_home(data_dir).path
    results = []
    for entry in _entries(files):
        target = dest / entry.name
        if _is_verified(entry, target):
            result = FetchResult(entry, target, "cached")
        else:
            url = _url(entry, mirror)
            logger.info("downloading %s from %s", entry.name, url)
            result = FetchResult(entry, _download(entry, dest, url, progressbar), "downloaded")
        results.append(result)
        if on_file is not None:
            on_file(result)
    return results


def verify(
    directory: str | os.PathLike[str] | None = None, files: Iterable[DataFile] | None = None
) -> list[FileStatus]:
    """Check a data directory against the registry.

    Args:
        directory: The directory (default: the data home, see
            :func:`~circuit_atlas.data.resolve.data_home`).
        files: Registry entries (default: the whole registry).

    Returns:
        One :class:`FileStatus` per file, in order (never raises for a bad or missing file).
    """
    root = data_home().path if directory is None else Path(directory).expanduser()
    statuses = []
    for entry in _entries(files):
        path = root / entry.name
        if not path.is_file():
            statuses.append(FileStatus(entry, path, "missing"))
            continue
        actual = sha256_file(path)
        statuses.append(FileStatus(entry, path, "ok" if actual == entry.sha256 else "bad", actual))
    return statuses


def _copy_verified(entry: DataFile, source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file, re-checking the copy's hash."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    try:
        shutil.copyfile(source, tmp)
        verify_file(entry, tmp, "The copy was deleted; the source changed while it was copied?")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def import_from(
    source: str | os.PathLike[str],
    files: Iterable[DataFile] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    on_file: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Import a local copy of a data directory into the data home, after checking every hash.

    This is how a machine without network is set up (``circuit-atlas data fetch --from DIR``).
    Files already verified in the data home are kept; every other file must be in ``source``
    with the registry's sha256, and all of them are checked before any is copied.

    Args:
        source: A directory with the registry's layout (``tasks/``, ``tokenizers/``,
            ``corpus/``), such as ``../shared/data``.
        files: Registry entries (default: the whole registry).
        data_dir: The explicit data directory (the data home).
        on_file: Called with each :class:`FetchResult` as it completes.

    Returns:
        One :class:`FetchResult` per file, in order.

    Raises:
        DataNotFoundError: If ``source`` does not exist or lacks files the data home needs (the
            message lists them); nothing is copied.
        DataIntegrityError: If a file in ``source`` has another sha256; nothing is copied.
    """
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"import source {str(root)!r} is not a directory")
    dest = data_home(data_dir).path
    entries = _entries(files)
    todo = [e for e in entries if not _is_verified(e, dest / e.name)]
    missing = [e.name for e in todo if not (root / e.name).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{len(missing)} file(s) needed are not in {str(root)!r}: {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}; nothing was imported. Run `{FETCH_COMMAND}` "
            "on a machine with network, or import from a complete copy."
        )
    for entry in todo:
        verify_file(entry, root / entry.name, "Nothing was imported")
    results = []
    for entry in entries:
        target = dest / entry.name
        if entry in todo:
            _copy_verified(entry, root / entry.name, target)
            result = FetchResult(entry, target, "imported")
        else:
            result = FetchResult(entry, target, "cached")
        results.append(result)
        if on_file is not None:
            on_file(result)
    return results


def ensure(
    files: Iterable[DataFile] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    progressbar: bool | object = False,
) -> list[Path]:
    """Make sure every file resolves, downloading into the data home only what is missing.

    The first-use hook of ``circuit-atlas demo``: files found anywhere in the resolution order
    (and verified) are used as they are; the others are fetched.

    Args:
        files: Registry entries (default: the whole registry).
        data_dir: The explicit data directory (searched first; the data home).
        mirror: Base URL of a mirror (see :func:`fetch`).
        progressbar: Passed to :func:`fetch`.

    Returns:
        The verified local path of each file, in order.

    Raises:
        DataFetchError: If a missing file cannot be downloaded (the message gives the offline
            command).
        DataIntegrityError: If a copy found or downloaded has the wrong sha256.
    """
    entries = _entries(files)
    found = {e.name: locate(e, data_dir) for e in entries}
    missing = [e for e in entries if found[e.name] is None]
    if missing:
        logger.info("fetching %d data file(s) into %s", len(missing), data_home(data_dir).path)
        fetched = {r.entry.name: r.path for r in
                   fetch(missing, data_dir=data_dir, mirror=mirror, progressbar=progressbar)}
    else:
        fetched = {}
    return [fetched[e.name] if found[e.name] is None else found[e.name][0] for e in entries]
