r"""Checkpoint integrity: weight fingerprints, hub hash checks, and the pickle guard.

A **weights fingerprint** identifies the tensors a checkpoint holds, so that two units that
analysed byte-identical weights can be told apart from units that analysed different ones (hub
branches of one Pythia model have been reported to hold identical weights at different steps,
EleutherAI/pythia issues #195 and #205). Its definition (scheme :data:`FINGERPRINT_SCHEME`):

1. Every tensor is described by its name, its dtype as a safetensors code (``F32``, ``F16``,
   ``BF16``, ``I64``, ...; :data:`SAFETENSORS_DTYPES`), its shape, and ``d`` = BLAKE2b-256 of its
   raw little-endian bytes in row-major (C) order, exactly the bytes a safetensors file stores.
2. The tensors are sorted by name (Unicode code points); for each one, the line
   ``json.dumps([name, dtype, shape], separators=(",", ":"))`` + ``"\n"`` (UTF-8) and then the
   32 bytes of ``d`` are fed to one BLAKE2b-256 hash.
3. The fingerprint is that hash's 64 hex digits.

So the fingerprint depends only on the tensors — not on file names, sharding, the order of tensors
in a file, header padding or ``__metadata__`` — and any change to one tensor's bytes, dtype, shape
or name changes it. It is computed from the files the model was loaded from:

* safetensors files (``model.safetensors`` or the shards of ``model.safetensors.index.json``):
  the header is parsed and each tensor's byte range is streamed in chunks of
  :data:`CHUNK_BYTES`, so memory stays constant (a 12b checkpoint is read once, at disk speed);
* pickled files (only with ``allow_pickle``): ``torch.load(mmap=True, weights_only=True)``, then
  the tensors as above (a pickle and its safetensors conversion have the same fingerprint);
* random models built from a config (no files): the model's ``state_dict()`` as above, in the
  dtype it was built in.

When a file comes from the Hugging Face hub cache, its sha256 is checked in the same pass against
the one the hub recorded: the cache names an LFS file's blob by its sha256
(``models--org--name/blobs/<sha256>``, the snapshot path is a symlink to it), which works offline.
A mismatch raises :class:`~circuit_atlas.errors.CheckpointIntegrityError`. Caches without
symlinks (Windows without developer mode) carry no hash and are not checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from circuit_atlas.errors import (
    CheckpointIntegrityError,
    InvalidCheckpointError,
    PickledCheckpointError,
)

__all__ = [
    "CHUNK_BYTES",
    "FINGERPRINT_SCHEME",
    "PICKLE_FILES",
    "SAFETENSORS_DTYPES",
    "SAFETENSORS_FILES",
    "WeightFiles",
    "fingerprint_files",
    "fingerprint_state_dict",
    "hub_sha256",
    "weight_files",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

FINGERPRINT_SCHEME = "tensors-blake2b256-v1"
"""Name of the fingerprint definition in this module's docstring."""

CHUNK_BYTES = 16 * 2**20
"""Bytes read (and hashed) at a time."""

SAFETENSORS_DTYPES: Mapping[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}  # fmt: skip
"""Torch dtype → the safetensors dtype code used in the fingerprint."""

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
"""A HF directory's safetensors weights: one file, or the index of its shards."""

PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
"""A HF directory's pickled weights: one file, or the index of its shards."""

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEADER_LIMIT = 100 * 2**20  # safetensors' own cap on the JSON header


@dataclass(frozen=True)
class WeightFiles:
    """The weight files of a checkpoint directory, in the format ``from_pretrained`` reads.

    Attributes:
        format: ``safetensors`` or ``pickle``.
        files: The weight files (shards resolved through the index), sorted.
    """

    format: Literal["safetensors", "pickle"]
    files: tuple[Path, ...]


def _digest() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=32)


def _combine(records: Iterable[tuple[str, str, list[int], bytes]]) -> str:
    outer = _digest()
    for name, dtype, shape, digest in sorted(records, key=lambda r: r[0]):
        line = json.dumps([name, dtype, list(shape)], separators=(",", ":")) + "\n"
        outer.update(line.encode("utf-8"))
        outer.update(digest)
    return outer.hexdigest()


def _sharded(directory: Path, index_name: str) -> tuple[Path, ...]:
    index = directory / index_name
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return tuple(sorted({directory / name for name in weight_map.values()}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InvalidCheckpointError(f"unreadable weight index {str(index)!r}: {err}") from err


def weight_files(directory: PathLike, *, allow_pickle: bool = False) -> WeightFiles | None:
    """Return the weight files ``from_pretrained`` would read in a HF checkpoint directory.

    safetensors (``model.safetensors``, else the shards of ``model.safetensors.index.json``) win;
    otherwise the pickled ``pytorch_model.bin`` (or its index's shards).

    Args:
        directory: The checkpoint directory.
        allow_pickle: Accept a directory whose only weights are pickled.

    Returns:
        The files, or None when the directory holds no weight file at all.

    Raises:
        PickledCheckpointError: If the only weights are pickled files (``*.bin``, ``*.pt``, ...)
            and ``allow_pickle`` is False.
        InvalidCheckpointError: For an unreadable shard index.
    """
    root = Path(directory)
    if (root / SAFETENSORS_FILES[0]).is_file():
        return WeightFiles("safetensors", (root / SAFETENSORS_FILES[0],))
    if (root / SAFETENSORS_FILES[1]).is_file():
        return WeightFiles("safetensors", _sharded(root, SAFETENSORS_FILES[1]))
    pickled = sorted(p.name for p in root.iterdir() if p.is_file()
                     and p.suffix in _PICKLE_SUFFIXES) if root.is_dir() else []  # fmt: skip
    if (root / PICKLE_FILES[1]).is_file():
        pickled = sorted({*pickled, PICKLE_FILES[1]})
    if not pickled:
        return None
    if not allow_pickle:
        raise PickledCheckpointError(repr(str(root)), pickled)
    if (root / PICKLE_FILES[0]).is_file():
        return WeightFiles("pickle", (root / PICKLE_FILES[0],))
    if (root / PICKLE_FILES[1]).is_file():
        return WeightFiles("pickle", _sharded(root, PICKLE_FILES[1]))
    return WeightFiles("pickle", tuple(root / name for name in pickled))


def hub_sha256(path: PathLike) -> str | None:
    """Return the sha256 the hub recorded for a file of the hub cache, when the cache knows it.

    The hub cache stores a file once as ``blobs/<etag>`` and links the snapshot path to it; for
    an LFS file (every weight file) the etag is the sha256 of its content. Available offline.

    Returns:
        The 64 hex digits, or None for a file outside the cache's symlink layout or a non-LFS
        file (whose etag is a git SHA-1).
    """
    target = Path(os.path.realpath(path))
    if target.parent.name == "blobs" and _SHA256.fullmatch(target.name):
        return target.name
    return None


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def fingerprint_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Fingerprint tensors in memory (see the module docstring for the definition).

    Args:
        state_dict: Name → tensor (any device; copied to the CPU one tensor at a time).

    Returns:
        64 hex digits; equal to :func:`fingerprint_files` of a safetensors file holding the same
        tensors.
    """
    return _combine(_tensor_records(state_dict))


def _tensor_records(state_dict: Mapping[str, torch.Tensor]) -> list:
    """``(name, safetensors dtype, shape, digest of the bytes)`` of every tensor in memory."""
    records = []
    for name, tensor in state_dict.items():
        digest = _digest()
        digest.update(_tensor_bytes(tensor))
        dtype = SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype).removeprefix("torch."))
        records.append((name, dtype, list(tensor.shape), digest.digest()))
    return records


def _read_exactly(handle, n: int, sinks: list, path: Path) -> None:
    while n > 0:
        chunk = handle.read(min(n, CHUNK_BYTES))
        if not chunk:
            raise InvalidCheckpointError(f"safetensors file {str(path)!r} is truncated")
        for sink in sinks:
            sink.update(chunk)
        n -= len(chunk)


def _safetensors_records(path: Path, expected_sha256: str | None) -> list:
    """Stream one safetensors file: per-tensor digests and, optionally, the file's sha256."""
    size = path.stat().st_size
    whole = hashlib.sha256() if expected_sha256 else None
    file_sinks = [whole] if whole is not None else []
    records = []
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise InvalidCheckpointError(f"{str(path)!r} is not a safetensors file (too short)")
        (n_header,) = struct.unpack("<Q", prefix)
        if n_header > min(_HEADER_LIMIT, size - 8):
            raise InvalidCheckpointError(f"{str(path)!r} is truncated or not a safetensors "
                                         f"file: its header length field says {n_header} "
                                         f"bytes, the file has {size}")  # fmt: skip
        raw = handle.read(n_header)
        for sink in file_sinks:
            sink.update(prefix)
            sink.update(raw)
        try:
            header = json.loads(raw)
            tensors = sorted(((name, info["dtype"], list(info["shape"]),
                               int(info["data_offsets"][0]), int(info["data_offsets"][1]))
                              for name, info in header.items() if name != "__metadata__"),
                             key=lambda t: t[3])  # fmt: skip
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise InvalidCheckpointError(f"{str(path)!r} has an unreadable safetensors header: "
                                         f"{err}") from err  # fmt: skip
        position, data_start = 0, 8 + n_header
        for name, dtype, shape, begin, end in tensors:
            if data_start + end > size and begin >= position and end >= begin:
                raise InvalidCheckpointError(f"{str(path)!r} is truncated: tensor {name!r} ends "
                                             f"at byte {data_start + end}, the file has {size}")
            if begin < position or end < begin or data_start + end > size:
                raise InvalidCheckpointError(f"{str(path)!r}: tensor {name!r} has invalid data "
                                             f"offsets [{begin}, {end}]")  # fmt: skip
            _read_exactly(handle, begin - position, file_sinks, path)  # padding, if any
            digest = _digest()
            _read_exactly(handle, end - begin, [digest, *file_sinks], path)
            records.append((name, dtype, shape, digest.digest()))
            position = end
        if whole is not None:
            _read_exactly(handle, size - data_start - position, file_sinks, path)
    if whole is not None and whole.hexdigest() != expected_sha256:
        raise CheckpointIntegrityError(str(path), str(expected_sha256), whole.hexdigest())
    return records


def _check_sha256(path: Path, expected: str) -> None:
    whole = hashlib.sha256()
    with open(path, "rb") as handle:
        _read_exactly(handle, path.stat().st_size, [whole], path)
    if whole.hexdigest() != expected:
        raise CheckpointIntegrityError(str(path), expected, whole.hexdigest())


def _pickle_records(path: Path) -> list:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) pickle cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    return _tensor_records(state)


def fingerprint_files(weights: WeightFiles, *, verify_hub: bool = True) -> str:
    """Fingerprint a checkpoint's weight files (definition in the module docstring).

    Args:
        weights: The files (:func:`weight_files`, or the files of a hub snapshot).
        verify_hub: Check each file that lies in the hub cache against the sha256 the hub
            recorded (:func:`hub_sha256`), in the same read.

    Returns:
        64 hex digits.

    Raises:
        CheckpointIntegrityError: If a hub-cached file's bytes do not match the hub's sha256.
        InvalidCheckpointError: For a malformed safetensors file, or a tensor name found in two
            shards.
    """
    records: list = []
    for path in weights.files:
        expected = hub_sha256(path) if verify_hub else None
        if weights.format == "safetensors":
            records += _safetensors_records(Path(path), expected)
            if expected:
                logger.debug("%s matches the hub's sha256 %s", path, expected)
        else:
            if expected:
                _check_sha256(Path(path), expected)
            records += _pickle_records(Path(path))
    counts = Counter(r[0] for r in records)
    twice = sorted(name for name, n in counts.items() if n > 1)
    if twice:
        raise InvalidCheckpointError(f"tensor(s) {twice[:5]} appear in more than one weight file "
                                     f"of {[str(p) for p in weights.files]}")  # fmt: skip
    return _combine(records)
