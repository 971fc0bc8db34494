"""The suite manifest, ``<suite>/suite.json``: what was trained, on what, and how.

Its keys are read by :mod:`circuit_atlas.models.suite` (``tokens_per_step``, ``sizes.<size>.steps``
and ``sizes.<size>.tokens_per_step``) and by the demo and the report (``curriculum``,
``tokenizer``, ``data``). It is rewritten atomically after every checkpoint, so that it always
lists exactly the checkpoints on disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from circuit_atlas.errors import ModelSourceError

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "SizeRecord", "SuiteManifest"]

MANIFEST_NAME = "suite.json"
"""File name of the manifest at the suite root (same as ``models.suite.SUITE_MANIFEST``)."""

MANIFEST_FORMAT = "circuit-atlas-suite/1"
"""Format tag written into every manifest."""


@dataclass
class SizeRecord:
    """One trained size of a suite.

    Attributes:
        n_layers / n_heads / d_model / d_mlp: Shape (the architecture is the suite's).
        n_params: All parameters, embeddings included.
        n_params_non_embedding: Parameters without the input and output embeddings.
        lr: Peak learning rate used.
        tokens_per_step: Training tokens per optimiser step.
        planned_steps: Checkpoint steps of the schedule.
        steps: Checkpoint steps saved so far (``step{N}`` directories on disk).
        complete: Whether the last checkpoint has been saved.
        history: Per checkpoint: ``step``, ``tokens``, ``train_loss`` (mean since the previous
            checkpoint, nats/token), ``val_loss`` (held-out text, nats/token), ``elapsed_s``.
        train_seconds: Wall-clock seconds spent training (summed over resumed sessions).
        tokens_per_second: Training throughput (tokens / ``train_seconds``).
    """

    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    n_params: int
    n_params_non_embedding: int
    lr: float
    tokens_per_step: int
    planned_steps: list[int]
    steps: list[int] = field(default_factory=list)
    complete: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0


@dataclass
class SuiteManifest:
    """The manifest of a locally trained suite (``suite.json``).

    Attributes:
        name: Suite name (its directory name).
        architecture: HF ``model_type`` of every checkpoint (``gpt_neox``, ``gpt2``, ``llama``;
            manifests written before it existed are GPT-NeoX).
        config: The :class:`~circuit_atlas.training.config.TrainConfig` as a dict.
        tokens_per_step: Training tokens per step (same for every size).
        seed: Run seed (initialisation, data order, curriculum).
        schedule: ``{"kind": "pythia-style", "steps": [...], "n_even": int}``.
        tokenizer: What the tokenizer is (see ``tokenizer.BuiltTokenizer.info``).
        data: Corpus provenance: ``corpus`` path, ``files`` (name, bytes, sha256), token counts.
        curriculum: ``fraction``, ``rows_per_batch``, ``helped_tasks``, ``unhelped_tasks``,
            ``templates``, ``vocabulary`` and ``examples``; ``helped_tasks`` is empty when the
            corpus was plain text only.
        sizes: One :class:`SizeRecord` per size, in training order.
        versions: Library versions used (circuit_atlas, torch, transformers, tokenizers).
        format: :data:`MANIFEST_FORMAT`.
    """

    name: str
    config: dict[str, Any]
    tokens_per_step: int
    seed: int
    schedule: dict[str, Any]
    tokenizer: dict[str, Any]
    data: dict[str, Any]
    curriculum: dict[str, Any]
    sizes: dict[str, SizeRecord] = field(default_factory=dict)
    architecture: str = "gpt_neox"
    versions: dict[str, str] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as JSON-serialisable dicts."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteManifest:
        """Rebuild a manifest from :meth:`to_dict` output.

        Raises:
            ModelSourceError: If the format tag is not :data:`MANIFEST_FORMAT`.
        """
        if data.get("format") != MANIFEST_FORMAT:
            raise ModelSourceError(
                f"suite manifest format {data.get('format')!r} is not {MANIFEST_FORMAT!r}"
            )
        values = dict(data)
        values["sizes"] = {k: SizeRecord(**v) for k, v in (data.get("sizes") or {}).items()}
        return cls(**values)

    def write(self, suite_dir: str | os.PathLike[str]) -> Path:
        """Write ``<suite_dir>/suite.json`` atomically and return its path."""
        path = Path(suite_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, suite_dir: str | os.PathLike[str]) -> SuiteManifest:
        """Read ``<suite_dir>/suite.json``.

        Raises:
            ModelSourceError: If it is missing, unreadable or of another format.
        """
        path = Path(suite_dir) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ModelSourceError(f"cannot read suite manifest {str(path)!r}: {err}") from err
        return cls.from_dict(data)
