"""Where circuit-atlas reads each registry file from, and the check that it is the right file.

A registry file (:mod:`circuit_atlas.data.registry`) is looked up, in order, in

1. the explicit data directory (the CLI's ``--data-dir``, the ``data_dir`` arguments);
2. ``$CIRCUIT_ATLAS_DATA``;
3. the verified cache, ``<cache root>/data`` (``$CIRCUIT_ATLAS_CACHE``, else the platform's user
   cache directory for ``circuit-atlas``, e.g. ``~/.cache/circuit-atlas``); ``circuit-atlas data
   fetch`` fills it;
4. ``../shared/data`` relative to the working directory, a convenience for a checkout that sits
   next to a local copy.

The first location that holds the file wins, and the file must be the registry's bytes (size and
sha256, computed once per file state): a wrong file is an error, never silently skipped. A
location that does not exist is simply empty. Nothing here downloads or copies: that is
:mod:`circuit_atlas.data.fetch`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from circuit_atlas.data.registry import CORPUS_FILES, REGISTRY, DataFile, get
from circuit_atlas.errors import DataIntegrityError, DataNotFoundError

__all__ = [
    "CACHE_ENV_VAR",
    "DATA_ENV_VAR",
    "FETCH_COMMAND",
    "Location",
    "cache_dir",
    "corpus_paths",
    "data_file",
    "data_home",
    "locate",
    "resolve_data_dir",
    "search_path",
    "sha256_file",
    "verify_file",
]

DATA_ENV_VAR = "CIRCUIT_ATLAS_DATA"
"""Environment variable naming a data directory (searched after ``--data-dir``)."""

CACHE_ENV_VAR = "CIRCUIT_ATLAS_CACHE"
"""Environment variable naming the cache root (the data cache is ``<root>/data``)."""

FETCH_COMMAND = "circuit-atlas data fetch"
"""The command that downloads and verifies every registry file into the cache."""

Origin = Literal["--data-dir", "$CIRCUIT_ATLAS_DATA", "cache", "../shared/data"]
"""Which rule of the resolution order a location comes from."""

_CHUNK = 1 << 20  # bytes read at a time when hashing
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


@dataclass(frozen=True)
class Location:
    """One directory of the resolution order.

    Attributes:
        path: The directory (it may not exist).
        origin: The rule that put it in the search path.
    """

    path: Path
    origin: Origin

    def describe(self) -> str:
        """``origin path``, with ``(does not exist)`` where it is missing."""
        missing = "" if self.path.is_dir() else " (does not exist)"
        return f"{self.origin} {str(self.path)!r}{missing}"


def cache_dir() -> Path:
    """The verified data cache: ``$CIRCUIT_ATLAS_CACHE/data``, else the user cache's ``data``.

    The user cache is ``platformdirs.user_cache_dir("circuit-atlas")`` (``~/.cache/circuit-atlas``
    on Linux, honouring ``$XDG_CACHE_HOME``). The directory is not created here.
    """
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser().absolute() / "data"
    import platformdirs

    return Path(platformdirs.user_cache_dir("circuit-atlas")) / "data"


def search_path(data_dir: str | os.PathLike[str] | None = None) -> list[Location]:
    """The resolution order: ``data_dir``, ``$CIRCUIT_ATLAS_DATA``, the cache, ``../shared/data``.

    Args:
        data_dir: The explicit data directory (``--data-dir``), or None.

    Returns:
        The locations in order (those not given are left out; paths may not exist).
    """
    locations: list[Location] = []
    if data_dir is not None:
        locations.append(Location(Path(data_dir).expanduser().absolute(), "--data-dir"))
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        locations.append(Location(Path(env).expanduser().absolute(), "$CIRCUIT_ATLAS_DATA"))
    locations.append(Location(cache_dir(), "cache"))
    shared = (Path.cwd() / ".." / "shared" / "data").resolve()
    locations.append(Location(shared, "../shared/data"))
    return locations


def data_home(data_dir: str | os.PathLike[str] | None = None) -> Location:
    """Where ``circuit-atlas data fetch`` writes: ``data_dir``, ``$CIRCUIT_ATLAS_DATA``, the cache.

    ``../shared/data`` is never written to.
    """
    return search_path(data_dir)[0]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the lower-case hex sha256 of a file's bytes (memoised per path, size and mtime)."""
    stat = os.stat(path)
    key = (str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns)
    digest = _HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                h.update(chunk)
        digest = _HASHES[key] = h.hexdigest()
    return digest


def verify_file(entry: DataFile, path: str | os.PathLike[str], hint: str = "") -> Path:
    """Check that ``path`` holds exactly the registry's bytes for ``entry``.

    Args:
        entry: The registry entry.
        path: The local copy.
        hint: What to do about a bad copy (appended to the error message).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataIntegrityError: If the sha256 differs (a truncated, corrupted or foreign file); the
            message names the file, the path, the expected and the actual hash.
    """
    path = Path(path)
    actual = sha256_file(path)
    if actual != entry.sha256:
        size = path.stat().st_size
        detail = f" ({size:,} bytes, expected {entry.size:,})" if size != entry.size else ""
        raise DataIntegrityError(entry.name, f"{path}{detail}", entry.sha256, actual, hint)
    return path


def locate(
    name: str | DataFile, data_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, Location] | None:
    """Find the verified local copy of a registry file.

    Args:
        name: Registry name (``tasks/sva/combined_verb_list.csv``) or entry.
        data_dir: The explicit data directory, or None.

    Returns:
        ``(path, location)`` of the first copy in the resolution order, or None if there is none.

    Raises:
        UnknownNameError: If ``name`` is not a registry name.
        DataIntegrityError: If the first copy found is not the registry's file.
    """
    entry = name if isinstance(name, DataFile) else get(name)
    for location in search_path(data_dir):
        path = location.path / entry.name
        if path.is_file():
            hint = (
                f"Run `{FETCH_COMMAND}` to replace it"
                if location.origin == "cache"
                else f"Remove or replace this copy (it is read from {location.origin})"
            )
            return verify_file(entry, path, hint), location
    return None


def _missing(entries: Iterable[DataFile], data_dir: str | os.PathLike[str] | None) -> str:
    entries = list(entries)
    names = ", ".join(repr(e.name) for e in entries[:3])
    if len(entries) > 3:
        names += f" and {len(entries) - 3} more"
    looked = "; ".join(loc.describe() for loc in search_path(data_dir))
    first = entries[0]
    return (
        f"{names} not found in any data location (looked in: {looked}). "
        f"It comes from {first.source.describe()} ({first.source.url}). "
        f"Fix: run `{FETCH_COMMAND}` (downloads and checks it into the cache), or on a machine "
        f"without network `{FETCH_COMMAND} --from DIR` with a copy of the data directory."
    )


def data_file(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the verified local copy of the registry file ``name``.

    Args:
        name: Registry name (``tasks/gender-pronoun/gender-pronoun.csv``).
        data_dir: The explicit data directory (``--data-dir``), searched first.

    Returns:
        The path of the first copy in the resolution order (:func:`search_path`).

    Raises:
        UnknownNameError: If ``name`` is not a registry name.
        DataNotFoundError: If no location has the file; the message names it, every place
            searched, its public source and the command that fetches it.
        DataIntegrityError: If the copy found has the wrong sha256.
    """
    found = locate(name, data_dir)
    if found is None:
        raise DataNotFoundError(_missing([get(name)], data_dir))
    return found[0]


def corpus_paths(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The demo corpus: verified local copies of :data:`~.registry.CORPUS_FILES`, in order.

    Raises:
        DataNotFoundError: If a corpus file is missing everywhere (the message says how to
            fetch it).
        DataIntegrityError: If a copy has the wrong sha256.
    """
    return [data_file(name, data_dir) for name in CORPUS_FILES]


def resolve_data_dir(
    data_dir: str | os.PathLike[str] | None = None, names: Iterable[str] | None = None
) -> Path:
    """The first directory of the resolution order that holds verified copies of ``names``.

    For code that needs one directory with the registry's layout (a study file's
    ``data_dir``); code that reads single files should use :func:`data_file`.

    Args:
        data_dir: The explicit data directory, or None.
        names: Registry names the directory must hold (default: every registry file).

    Returns:
        The directory (absolute).

    Raises:
        DataNotFoundError: If no single location holds them all; the message names the missing
            files, where they come from and the command that fetches them.
        DataIntegrityError: If a location holds a wrong copy of one of them.
    """
    entries = [get(n) for n in names] if names is not None else list(REGISTRY)
    missing_first: list[DataFile] | None = None
    for location in search_path(data_dir):
        if not location.path.is_dir():
            continue
        missing = [e for e in entries if not (location.path / e.name).is_file()]
        if not missing:
            for entry in entries:
                verify_file(entry, location.path / entry.name,
                            f"Remove or replace this copy (it is read from {location.origin})")
            return location.path
        if missing_first is None:
            missing_first = missing
    raise DataNotFoundError(_missing(missing_first or entries, data_dir))
