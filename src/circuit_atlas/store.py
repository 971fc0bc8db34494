"""The results store: Parquet files per unit of work, written atomically, queried with DuckDB.

A store is a directory (layout and every table's columns in ``docs/store.md``; schema version
:data:`SCHEMA_VERSION`). Each finished unit — one (model, checkpoint) — is one directory
``units/<unit_id>/`` holding one Parquet file per table and a ``_COMMITTED`` marker. A unit is
staged under ``.tmp/``, fsynced, marked, and renamed into place in one ``rename(2)``, so a crash at
any moment leaves either the whole unit or nothing, and an existing unit is never overwritten.
Queries run on DuckDB views ``read_parquet('units/*/<table>.parquet', union_by_name=true)``
(listing the files when older units lack a table, and adding as nulls the columns that older
units lack). The table schemas are in
:mod:`circuit_atlas.store_schema`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from circuit_atlas._faults import fault_point
from circuit_atlas.errors import StoreError
from circuit_atlas.store_schema import (
    ADDED_COLUMNS,
    ALGORITHM_CI_COLUMNS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    TABLES,
    TABLES_BY_VERSION,
    _conform,
    table_schema,
)

__all__ = [
    "ADDED_COLUMNS",
    "ALGORITHM_CI_COLUMNS",
    "DAMAGED",
    "MANIFEST",
    "MARKER",
    "READABLE_SCHEMA_VERSIONS",
    "REPAIR_HINT",
    "SCHEMA_VERSION",
    "STORE_FORMAT",
    "TABLES",
    "TABLES_BY_VERSION",
    "ResultsStore",
    "atomic_write_text",
    "table_schema",
]

logger = logging.getLogger(__name__)

STORE_FORMAT = "circuit-atlas-results"
"""The ``format`` field of the manifest."""

MANIFEST = "store.json"
"""File name of the manifest at the store's root."""

MARKER = "_COMMITTED"
"""File written last in a unit directory; lists the unit's files and their sizes."""

DAMAGED = "damaged"
"""Directory where ``run --repair`` moves damaged units and foreign entries (never deleted)."""

REPAIR_HINT = ("To fix it: `circuit-atlas status {root}` lists every damaged entry; "
               "`circuit-atlas run STUDY -r {root} --repair` moves them to {root}/damaged/ "
               "(nothing is deleted) and recomputes the units they held")
"""How a refused store can be repaired (``{root}``: the store); ends a damaged store's error."""

_TOP_LEVEL = frozenset(
    {MANIFEST, "units", "plan.json", "state", "runs", ".tmp", "exports", "reports", DAMAGED}
)
_UNIT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename, fsync of the directory).

    Args:
        path: Destination file; its directory must exist.
        text: UTF-8 content.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultsStore:
    """A results directory: committed units, their tables, and the run state around them.

    Args:
        root: The store's directory.
        create: Create the directory and its manifest when it does not exist or is empty.
            Without it, a missing store is an error.
        check: Check the layout on opening (:meth:`check`); False opens a damaged store so
            that :mod:`circuit_atlas.store_repair` can list and set aside what is damaged.

    Raises:
        StoreError: If ``root`` is not a store (missing, or a non-empty directory without
            ``store.json``), was written by an incompatible schema version, or holds a foreign
            or torn entry (see ``docs/store.md``).
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False,
                 check: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        manifest = self.root / MANIFEST
        if not manifest.exists():
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"{str(self.root)!r} is a file, not a results store directory")
            empty = not self.root.exists() or not any(self.root.iterdir())
            if not create:
                raise StoreError(f"{str(self.root)!r} is not a results store (no {MANIFEST})")
            if not empty:
                raise StoreError(f"{str(self.root)!r} is a non-empty directory without {MANIFEST}; "
                                 "refusing to mix results into it")
            self._initialise()
        self._read_manifest()
        self._markers: dict[str, dict] = {}
        if check:
            try:
                self.check()
            except StoreError as exc:
                raise StoreError(f"{exc}. {REPAIR_HINT.format(root=self.root)}") from None

    # -- layout ---------------------------------------------------------------------------

    @property
    def units_dir(self) -> Path:
        """Directory holding one sub-directory per committed unit."""
        return self.root / "units"

    def _initialise(self) -> None:
        """Create the store next to ``root`` and rename it into place in one ``rename(2)``.

        Two processes creating one store at once therefore both end up with the same complete
        store (the second rename fails and that process opens the first one's).
        """
        staging = self.root.parent / f".{self.root.name}.{uuid.uuid4().hex}.creating"
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            for sub in ("units", ".tmp", "runs", "state/running", "state/failed"):
                (staging / sub).mkdir(parents=True, exist_ok=True)
            manifest = {
                "format": STORE_FORMAT,
                "schema_version": SCHEMA_VERSION,
                "tables": sorted(TABLES),
                "created_at": datetime.now(timezone.utc).isoformat(),
            }
            atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            try:
                os.rename(staging, self.root)  # onto a missing or empty directory
            except OSError:
                if not (self.root / MANIFEST).is_file():
                    raise
                logger.info("results store %s was created concurrently", self.root)
                return
            _fsync_dir(self.root.parent)
        except OSError as exc:
            raise StoreError(f"cannot create results store {str(self.root)!r}: "
                             f"{exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("created results store %s (schema v%d)", self.root, SCHEMA_VERSION)

    def _read_manifest(self) -> None:
        path = self.root / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"unreadable store manifest {str(path)!r}: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise StoreError(f"{str(path)!r} is not a circuit-atlas store manifest "
                             f"(format {found!r}, expected {STORE_FORMAT!r})")
        if manifest.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
            raise StoreError(f"store {str(self.root)!r} has schema version "
                             f"{manifest.get('schema_version')!r}; this circuit-atlas reads "
                             f"versions {list(READABLE_SCHEMA_VERSIONS)} only (export it with "
                             "the version that wrote it)")
        self.manifest = manifest

    def _upgrade_manifest(self) -> None:
        """Mark an older store as version :data:`SCHEMA_VERSION` before its first new unit.

        Its older units stay as they are (they are read with their own version's tables).
        """
        old = self.manifest.get("schema_version")
        if old == SCHEMA_VERSION:
            return
        manifest = {**self.manifest, "schema_version": SCHEMA_VERSION, "tables": sorted(TABLES),
                    "upgraded_from": old,
                    "upgraded_at": datetime.now(timezone.utc).isoformat()}  # fmt: skip
        atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        self.manifest = manifest
        logger.info("results store %s upgraded from schema v%s to v%d", self.root, old,
                    SCHEMA_VERSION)

    def check(self) -> None:
        """Check the layout: no foreign entries, every unit committed and intact.

        Raises:
            StoreError: Naming the first foreign, torn or resized entry found.
        """
        for entry in self.root.iterdir():
            if entry.name not in _TOP_LEVEL:
                raise StoreError(
                    f"foreign entry {str(entry)!r} in results store {str(self.root)!r}"
                )
        if not self.units_dir.is_dir():
            raise StoreError(f"results store {str(self.root)!r} has no units/ directory")
        self._markers = {
            entry.name: self._check_unit_dir(entry) for entry in self.units_dir.iterdir()
        }

    def _check_unit_dir(self, entry: Path) -> dict:
        if entry.name in self._markers:
            return self._markers[entry.name]
        if not entry.is_dir() or not _UNIT_ID.match(entry.name):
            raise StoreError(f"foreign entry {str(entry)!r} in {str(self.units_dir)!r}")
        marker_path = entry / MARKER
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"unit directory {str(entry)!r} has no {MARKER} marker "
                             "(torn or foreign; it was not written by circuit-atlas)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"unreadable marker {str(marker_path)!r}: {exc}") from exc
        version = marker.get("schema_version")
        if marker.get("unit_id") == entry.name and version not in READABLE_SCHEMA_VERSIONS:
            raise StoreError(f"unit {str(entry)!r} was written with schema version {version!r}; "
                             f"this circuit-atlas reads versions {list(READABLE_SCHEMA_VERSIONS)}")
        if marker.get("unit_id") != entry.name or version not in READABLE_SCHEMA_VERSIONS:
            raise StoreError(f"marker {str(marker_path)!r} names unit {marker.get('unit_id')!r} "
                             f"schema v{version!r}; expected {entry.name!r} with a version in "
                             f"{list(READABLE_SCHEMA_VERSIONS)}")
        files = marker.get("files", {})
        present = {p.name for p in entry.iterdir()} - {MARKER}
        expected = {f"{t}.parquet" for t in TABLES_BY_VERSION[version]}
        if present != set(files) or set(files) != expected:
            raise StoreError(f"unit {str(entry)!r}: files {sorted(present)} differ from its marker "
                             f"{sorted(files)} / the schema's tables")
        for fname, info in files.items():
            size = (entry / fname).stat().st_size
            if size != info.get("bytes"):
                raise StoreError(f"{str(entry / fname)!r} has {size} bytes; its marker says "
                                 f"{info.get('bytes')}")
        self._markers[entry.name] = marker
        return marker

    def verify(self) -> None:
        """Read every committed Parquet file and check its schema and row count.

        Raises:
            StoreError: Naming the first file that does not match.
        """
        self.check()
        for unit_id, marker in self._markers.items():
            self._verify_unit(unit_id, marker)

    def _verify_unit(self, unit_id: str, marker: dict) -> None:
        """Check one committed unit's Parquet footers: readable, its version's schema, rows."""
        for name in TABLES_BY_VERSION[marker["schema_version"]]:
            schema = table_schema(name, marker["schema_version"])
            path = self.units_dir / unit_id / f"{name}.parquet"
            try:
                meta = pq.read_metadata(path)
                file_schema = pq.read_schema(path).remove_metadata()
            except (OSError, pa.ArrowException) as exc:
                raise StoreError(f"unreadable Parquet file {str(path)!r}: {exc}") from exc
            if not file_schema.equals(schema):
                raise StoreError(f"{str(path)!r} has schema {file_schema}, expected {schema}")
            if meta.num_rows != marker["files"][f"{name}.parquet"]["rows"]:
                raise StoreError(f"{str(path)!r} has {meta.num_rows} rows; marker disagrees")

    # -- units ----------------------------------------------------------------------------

    def unit_ids(self) -> set[str]:
        """Return the ids of every committed unit."""
        self.check()
        return set(self._markers)

    def has_unit(self, unit_id: str) -> bool:
        """Return whether unit ``unit_id`` is committed."""
        path = self.units_dir / unit_id
        return path.is_dir() and bool(self._check_unit_dir(path))

    def write_unit(self, unit_id: str, tables: Mapping[str, Any]) -> bool:
        """Write one unit's rows to every table, atomically.

        Args:
            unit_id: The unit's id; every row must carry it.
            tables: Table name → rows (``pandas.DataFrame``, ``pyarrow.Table`` or list of dicts)
                with exactly the table's columns. Tables left out are written empty.

        Returns:
            True if the unit was written, False if it was already committed (nothing changes).

        Raises:
            StoreError: For an unknown table, wrong columns, values that do not fit the schema,
                or rows of another unit. Nothing is left behind by a failed write.
        """
        if not _UNIT_ID.match(unit_id):
            raise StoreError(f"invalid unit id {unit_id!r}")
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise StoreError(f"unknown table(s) {unknown}; the store has {sorted(TABLES)}")
        if self.has_unit(unit_id):
            logger.info("unit %s is already committed; not rewriting it", unit_id)
            return False
        arrow = {name: _conform(name, tables.get(name), unit_id) for name in TABLES}
        self._upgrade_manifest()
        self._clean_stale_tmp()
        tmp = self.root / ".tmp" / f"{unit_id}.{_host()}.{os.getpid()}.{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            files = {}
            for name, table in arrow.items():
                path = tmp / f"{name}.parquet"
                with open(path, "wb") as handle:
                    pq.write_table(table, handle, compression="zstd")
                    handle.flush()
                    os.fsync(handle.fileno())
                files[path.name] = {"rows": table.num_rows, "bytes": path.stat().st_size}
            fault_point("store.staged")
            marker = {
                "unit_id": unit_id,
                "schema_version": SCHEMA_VERSION,
                "files": files,
                "written_at": datetime.now(timezone.utc).isoformat(),
            }
            with open(tmp / MARKER, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(marker, indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_dir(tmp)
            fault_point("store.marked")
            try:
                os.rename(tmp, self.units_dir / unit_id)
            except OSError:
                if (self.units_dir / unit_id).is_dir():  # committed concurrently: keep that one
                    logger.warning("unit %s was committed concurrently; dropped this copy",
                                   unit_id)
                    return False
                raise
            fault_point("store.renamed")
            _fsync_dir(self.units_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        logger.info("committed unit %s (%s rows)", unit_id,
                    ", ".join(f"{n}={t.num_rows}" for n, t in arrow.items()))
        return True

    def _clean_stale_tmp(self) -> None:
        host = _host()
        (self.root / ".tmp").mkdir(exist_ok=True)
        for entry in (self.root / ".tmp").iterdir():
            parts = entry.name.split(".")
            if len(parts) >= 4 and parts[-3] == host and parts[-2].isdigit():
                if not _pid_alive(int(parts[-2])):
                    shutil.rmtree(entry, ignore_errors=True)

    # -- queries --------------------------------------------------------------------------

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Return an in-memory DuckDB connection with one view per table over the store.

        Raises:
            StoreError: If the layout check fails (see :meth:`check`).
        """
        self.check()
        con = duckdb.connect()
        for name, schema in TABLES.items():
            holders = [u for u, marker in sorted(self._markers.items())
                       if name in TABLES_BY_VERSION[marker["schema_version"]]]  # fmt: skip
            if holders:
                if len(holders) == len(self._markers):  # every unit has the table: one glob
                    paths = [self.units_dir / "*" / f"{name}.parquet"]
                else:  # older units lack it: list the files that exist
                    paths = [self.units_dir / u / f"{name}.parquet" for u in holders]
                listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
                query = f"SELECT * FROM read_parquet([{listed}], union_by_name=true)"
                if any(table_schema(name, self._markers[u]["schema_version"]) != schema
                       for u in holders):  # older units lack columns: add them as nulls
                    con.register(f"_empty_{name}", schema.empty_table())
                    query += f" UNION ALL BY NAME SELECT * FROM _empty_{name}"
                con.execute(f"CREATE VIEW {name} AS {query}")
            else:
                con.register(f"_empty_{name}", schema.empty_table())
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM _empty_{name}")
        return con

    def query(self, sql: str) -> pd.DataFrame:
        """Run a DuckDB SQL query over the store's views (``units``, ``circuits``, ...).

        Returns:
            The result as a ``pandas.DataFrame``.
        """
        con = self.connect()
        try:
            relation = con.sql(sql)
            if relation is None:  # a statement without a result
                return pd.DataFrame()
            return relation.to_arrow_table().to_pandas()
        finally:
            con.close()

    def table(self, name: str) -> pd.DataFrame:
        """Return every row of table ``name`` (columns in schema order).

        Raises:
            StoreError: If ``name`` is not a table of the store.
        """
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}; the store has {sorted(TABLES)}")
        columns = ", ".join(f'"{c}"' for c in TABLES[name].names)
        return self.query(f"SELECT {columns} FROM {name}")

    # -- run state ------------------------------------------------------------------------

    def write_plan(self, plan: dict) -> None:
        """Record the planned units of the current run (``plan.json``, read by ``status``)."""
        atomic_write_text(self.root / "plan.json", json.dumps(plan, indent=2, default=str) + "\n")

    def read_plan(self) -> dict | None:
        """Return the recorded plan, or None if no run has recorded one."""
        path = self.root / "plan.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def mark_state(self, unit_id: str, state: str, info: dict) -> None:
        """Record that ``unit_id`` is ``running`` or ``failed`` (replacing its other state).

        Args:
            unit_id: The unit.
            state: ``running`` or ``failed``.
            info: JSON-serialisable details (pid, host, started_at; error, traceback).
        """
        if state not in ("running", "failed"):
            raise StoreError(f"unknown unit state {state!r}; expected 'running' or 'failed'")
        self.clear_state(unit_id)
        record = {"unit_id": unit_id, "state": state, **info}
        atomic_write_text(self.root / "state" / state / f"{unit_id}.json",
                          json.dumps(record, indent=2, default=str) + "\n")

    def clear_state(self, unit_id: str) -> None:
        """Forget the running/failed record of ``unit_id`` (no error if there is none)."""
        for state in ("running", "failed"):
            (self.root / "state" / state / f"{unit_id}.json").unlink(missing_ok=True)

    def read_state(self) -> dict[str, dict[str, dict]]:
        """Return ``{"running": {unit_id: record}, "failed": {unit_id: record}}``.

        A ``running`` record whose process (on this host) no longer exists gets
        ``"interrupted": True``.
        """
        host = socket.gethostname()
        out: dict[str, dict[str, dict]] = {"running": {}, "failed": {}}
        for state in out:
            folder = self.root / "state" / state
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                with contextlib.suppress(OSError, json.JSONDecodeError):
                    record = json.loads(path.read_text(encoding="utf-8"))
                    if state == "running" and record.get("host") == host and "pid" in record:
                        record["interrupted"] = not _pid_alive(int(record["pid"]))
                    out[state][path.stem] = record
        return out

    def lock(self, *, wait: float | None = 0,
             on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager:
        """Hold the store's writer lock (``state/driver.lock``) for the body of a ``with`` block.

        One driver per store: :func:`~circuit_atlas.study.runner.run_study` holds it for a whole
        run. It is an OS lock (:func:`circuit_atlas.lock.hold_lock`), released by the kernel
        when its process dies, so a killed run never blocks the next one.

        Args:
            wait: Seconds to wait for another holder (0: refuse at once; None: no limit).
            on_wait: Called with a message naming the holder before waiting.

        Raises:
            LockedError: If another process holds it (the message names it) and ``wait`` ran
                out.
        """
        from circuit_atlas.lock import hold_lock

        state = self.root / "state"
        state.mkdir(exist_ok=True)
        return hold_lock(state / "driver.lock", state / "driver.json",
                         f"results store {str(self.root)!r}", wait=wait, on_wait=on_wait)

    def runs_dir(self) -> Path:
        """Directory holding one log file and one JSON record per run."""
        path = self.root / "runs"
        path.mkdir(exist_ok=True)
        return path
