"""Typed exceptions raised by circuit-atlas.

Every error names the bad value it was given, so that a researcher can fix the input without
reading a traceback. All of them derive from :class:`CircuitAtlasError`, and those raised for bad
user input also derive from :class:`ValueError` (or :class:`FileNotFoundError`) so that generic
handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "AlgorithmError",
    "AnalysisError",
    "CheckpointIntegrityError",
    "CircuitAtlasError",
    "ComponentDataError",
    "ConfigError",
    "DataFetchError",
    "DataIntegrityError",
    "DataNotFoundError",
    "InvalidCheckpointError",
    "LockedError",
    "MibError",
    "ModelSourceError",
    "NonFiniteError",
    "OutputPathError",
    "PickledCheckpointError",
    "RevisionListError",
    "StoreError",
    "TaskDataError",
    "UnknownNameError",
    "UnsupportedArchitectureError",
]


class CircuitAtlasError(Exception):
    """Base class of every error raised by circuit-atlas."""


class UnknownNameError(CircuitAtlasError, KeyError):
    """A name (task, model, schedule, method) is not in its registry.

    The message lists the valid names.
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class InvalidCheckpointError(CircuitAtlasError, ValueError):
    """A checkpoint step is not a real checkpoint of the model suite.

    The message names the step and its valid neighbours.
    """


class ModelSourceError(CircuitAtlasError, ValueError):
    """A model source (hub name, local directory, config) cannot be loaded."""


class UnsupportedArchitectureError(ModelSourceError):
    """The checkpoint's architecture has no adapter, or uses an option its adapter lacks."""


class PickledCheckpointError(ModelSourceError):
    """A checkpoint holds only pickled weights and pickles were not allowed.

    Pickled weights are ``pytorch_model.bin`` (or its shards), ``*.pt``, ``*.pth``. Unpickling
    can execute arbitrary code, so circuit-atlas loads safetensors only unless the caller opts in
    (``allow_pickle=True``, ``--allow-pickle``, ``[run] allow_pickle = true``).
    The message names the checkpoint, the pickled files and the opt-in.

    Attributes:
        where: The checkpoint (a directory, or ``repo@revision`` on the hub).
        files: The pickled weight files found.
    """

    def __init__(self, where: str, files: tuple[str, ...] | list[str]) -> None:
        self.where = where
        self.files = tuple(files)
        super().__init__(
            f"{where} has only pickled weights ({', '.join(self.files)}) and no safetensors; "
            "loading a pickle can execute arbitrary code, so it is refused. If you trust the "
            "file, opt in with allow_pickle=True (CLI: --allow-pickle; study file: [run] "
            "allow_pickle = true), or convert it to safetensors"
        )


class CheckpointIntegrityError(ModelSourceError):
    """A downloaded weight file's bytes do not match the hash the hub recorded for it.

    Attributes:
        path: The file in the hub cache (the snapshot path).
        expected: The hub's sha256 (hex; the LFS object id, which names the cached blob).
        actual: The sha256 of the bytes on disk (hex).
    """

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{path!r} is corrupted: the hub records sha256 {expected}, the file has {actual}. "
            "Delete the cached file (or the whole revision: `hf cache delete`) and download it "
            "again"
        )


class RevisionListError(ModelSourceError):
    """The list of a hub repository's revisions (its branches) is not available.

    Raised offline (or when the hub is unreachable) when neither the revision cache nor the local
    hub cache holds the repository; circuit-atlas never guesses a revision name. The message
    names the repository and every place that was looked at.
    """


class DataNotFoundError(CircuitAtlasError, FileNotFoundError):
    """A data file (task data, tokenizer, corpus) or a data directory is missing.

    For a registry file the message names the file, every place that was searched, the public
    source it comes from and the command that fetches it (``circuit-atlas data fetch``).
    """


class DataFetchError(DataNotFoundError):
    """A data file could not be downloaded (no network, an HTTP error, a cut connection).

    The message names the file, the URL and the offline fix
    (``circuit-atlas data fetch --from DIR``). Nothing partial is left behind.
    """


class DataIntegrityError(CircuitAtlasError, ValueError):
    """A data file's bytes are not the registry's: a wrong hash, a truncation, a foreign file.

    Attributes:
        name: The registry name of the file (``tasks/sva/ML-simple_agrmt_all.csv``).
        path: Where the bad copy is (a local file or a URL).
        expected: The registry's sha256 (hex).
        actual: The sha256 of the bytes found (hex).
    """

    def __init__(self, name: str, path: str, expected: str, actual: str, hint: str = "") -> None:
        self.name = name
        self.path = path
        self.expected = expected
        self.actual = actual
        message = (
            f"{name!r} at {path!r} is not the registry's file: expected sha256 {expected}, "
            f"got {actual}"
        )
        super().__init__(f"{message}. {hint}" if hint else message)


class TaskDataError(CircuitAtlasError, ValueError):
    """A task's data is malformed (the message names the file, row and field)."""


class ComponentDataError(CircuitAtlasError, ValueError):
    """The data a component score needs cannot be built for this model.

    No tokenizer, too few single-token items, or a corpus too small; the message names what is
    missing.
    """


class ConfigError(CircuitAtlasError, ValueError):
    """A study configuration is invalid (the message names the key and file line)."""


class StoreError(CircuitAtlasError):
    """The results store is incompatible, corrupted, or holds a foreign file."""


class LockedError(CircuitAtlasError):
    """A results store or suite directory is in use by another writer (its lock is held).

    The message names the directory and the holder (pid, host, command, since when) and says
    how to wait for it (``--wait``). Nothing has been written.
    """


class NonFiniteError(CircuitAtlasError, ValueError):
    """A model's weights or activations hold NaN or infinite values.

    The message names the parameter or the layer whose output is not finite, so no score is
    computed (or stored) from them.
    """


class OutputPathError(CircuitAtlasError, ValueError):
    """An output path is a file, lies under a file, or is not writable (the message names it).

    Raised before any work starts (:func:`circuit_atlas.paths.check_output_dir`).
    """


class AnalysisError(CircuitAtlasError, ValueError):
    """An analysis got a frame without the columns it needs, or an invalid parameter.

    The message names the missing columns or the bad value.
    """


class AlgorithmError(CircuitAtlasError, ValueError):
    """The IOI algorithm decomposition got an invalid setting or input.

    A threshold that is not finite, an unknown denominator or role, score tensors whose shape
    does not match the model; the message names the bad value.
    """


class MibError(CircuitAtlasError, ValueError):
    """A MIB circuit metric got an invalid input (the message names the bad value).

    Bad edge fractions, an empty or malformed faithfulness curve, an undefined curve, or scores
    that do not match the graph.
    """
