"""Configuration of a training run: model sizes, optimisation, data, tokenizer and curriculum.

Every field is a value of a frozen dataclass so that a run is fully described by its config (it is
written into the suite manifest, and a resumed run must present the same config).

The architecture is Pythia's by default (GPT-NeoX: parallel attention + MLP residual, rotary
embeddings on 16 dimensions of each head, untied input and output embeddings, no dropout);
``arch="gpt2"`` trains GPT-2's (sequential residual, learned positions, tied embeddings) and
``arch="llama"`` Llama's (RMSNorm, SwiGLU, full rotary) at the same sizes (:data:`ARCHITECTURES`).
The optimiser follows Pythia's recipe scaled down (AdamW, betas (0.9, 0.95), weight decay 0.01,
1% linear warm-up, cosine decay to 10% of the peak learning rate, gradient clipping at 1.0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from circuit_atlas.errors import ConfigError, UnknownNameError

__all__ = [
    "ARCHITECTURES",
    "SHAREABLE",
    "SIZES",
    "Architecture",
    "CurriculumConfig",
    "ModelSize",
    "TokenizerKind",
    "TrainConfig",
    "get_size",
]

Architecture = Literal["gpt_neox", "gpt2", "llama"]
"""A trainable architecture, by HF ``model_type`` (each has an adapter in
:data:`circuit_atlas.models.adapters.ADAPTERS`)."""

TokenizerKind = Literal["bpe", "pythia"]
"""``bpe``: a small byte-level BPE trained on the corpus; ``pythia``: the GPT-NeoX-20B tokenizer."""


@dataclass(frozen=True)
class ModelSize:
    """One model size of a suite (the same shape in every architecture of :data:`ARCHITECTURES`).

    Attributes:
        name: Registry name (``tiny``, ``small``, ...); also the suite sub-directory.
        n_layers: Transformer blocks.
        n_heads: Attention heads per block.
        d_model: Residual-stream width.
        d_mlp: MLP hidden width (4 × ``d_model`` as in Pythia).
        lr: Peak learning rate used when the run does not override it (smaller models take
            larger rates, as in Pythia: 1e-3 for 70m, 6e-4 for 160m).
        rotary_dims: Dimensions of each head that get rotary embeddings. Pythia rotates 25% of
            its 64-dimensional heads, i.e. **16 dimensions** (70m to 2.8b); we keep that count
            rather than the fraction, because 25% of a 16-dimensional head is 4 dimensions,
            a single useful frequency pair, with which no head can single out the previous
            position (measured: an induction head formed in 600 steps on repeated random
            tokens with 16 rotary dimensions and not in 1,300 with 4; docs/training.md).
            GPT-NeoX only: GPT-2 has learned positions, Llama rotates every dimension.
    """

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    lr: float
    rotary_dims: int = 16

    @property
    def d_head(self) -> int:
        """Dimensions per head (``d_model / n_heads``)."""
        return self.d_model // self.n_heads

    @property
    def rotary_pct(self) -> float:
        """Fraction of each head's dimensions with rotary embeddings (HF ``rotary_pct``)."""
        return min(1.0, self.rotary_dims / self.d_head)

    def hf_config(self, vocab_size: int, *, arch: str = "gpt_neox", eos_id: int = 0,
                  pad_id: int = 1) -> Any:
        """Return the ``transformers`` config of this size in an architecture.

        Args:
            vocab_size: Rows of the embedding and unembedding matrices.
            arch: A key of :data:`ARCHITECTURES` (``gpt_neox``: Pythia's, the default).
            eos_id: End-of-text id (also BOS), 0 for both built-in tokenizers.
            pad_id: Padding id, 1 for both built-in tokenizers.

        Raises:
            UnknownNameError: For an unknown ``arch`` (the message lists the valid ones).
        """
        try:
            build = ARCHITECTURES[arch]
        except KeyError:
            known = ", ".join(ARCHITECTURES)
            raise UnknownNameError(
                f"unknown architecture {arch!r}; trainable architectures: {known}"
            ) from None
        return build(self, vocab_size, eos_id, pad_id)


def _neox_config(size: ModelSize, vocab_size: int, eos_id: int, pad_id: int) -> Any:
    """Pythia's architecture: parallel residual, partial rotary, untied embeddings, ``gelu``."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        intermediate_size=size.d_mlp,
        hidden_act="gelu",
        rotary_pct=size.rotary_pct,
        rotary_emb_base=10000,
        max_position_embeddings=2048,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        initializer_range=0.02,
        layer_norm_eps=1e-5,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def _gpt2_config(size: ModelSize, vocab_size: int, eos_id: int, pad_id: int) -> Any:
    """GPT-2's architecture: sequential residual, learned positions, tied embeddings.

    1,024 positions, ``gelu_new``, LayerNorm, no dropout.
    """
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=size.d_model,
        n_layer=size.n_layers,
        n_head=size.n_heads,
        n_inner=size.d_mlp,
        n_positions=1024,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def _llama_config(size: ModelSize, vocab_size: int, eos_id: int, pad_id: int) -> Any:
    """Llama's architecture: RMSNorm, SwiGLU MLP of width ``d_mlp``, full rotary.

    Rotary base 10,000 on every dimension, one K/V head per query head, no biases, untied
    embeddings.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        intermediate_size=size.d_mlp,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_heads,
        hidden_act="silu",
        max_position_embeddings=2048,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


ARCHITECTURES: Mapping[str, Callable[[ModelSize, int, int, int], Any]] = MappingProxyType({
    "gpt_neox": _neox_config,
    "gpt2": _gpt2_config,
    "llama": _llama_config,
})
"""Trainable architecture (HF ``model_type``) → ``build(size, vocab_size, eos_id, pad_id)``
returning its ``transformers`` config; the HF class that holds the weights is the adapter's."""


SIZES: Mapping[str, ModelSize] = {
    size.name: size
    for size in (
        ModelSize("micro", n_layers=1, n_heads=2, d_model=32, d_mlp=128, lr=3e-3),
        ModelSize("tiny", n_layers=2, n_heads=4, d_model=64, d_mlp=256, lr=3e-3),
        ModelSize("small", n_layers=3, n_heads=4, d_model=128, d_mlp=512, lr=2e-3),
        ModelSize("base", n_layers=4, n_heads=8, d_model=256, d_mlp=1024, lr=1e-3),
        ModelSize("medium", n_layers=6, n_heads=8, d_model=512, d_mlp=2048, lr=1e-3),
    )
}
"""Registered sizes. ``medium`` has Pythia-70m's shape; the others are smaller for CPU runs."""


def get_size(name: str) -> ModelSize:
    """Return the registered :class:`ModelSize` called ``name``.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message lists the sizes).
    """
    try:
        return SIZES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown model size {name!r}; registered sizes: {', '.join(SIZES)}"
        ) from None


SHAREABLE: tuple[str, ...] = ("names", "places", "objects")
"""Evaluation vocabulary sets a curriculum may share (:attr:`CurriculumConfig.shared`)."""


@dataclass(frozen=True)
class CurriculumConfig:
    """How much templated task text is mixed into the corpus stream (see ``curriculum.py``).

    Attributes:
        fraction: Fraction of each batch's rows filled with templated task sentences instead of
            corpus text (0 = plain text only). The number of rows is ``round(fraction ×
            batch_size)``.
        tasks: Tasks that get templated sentences (names from the curriculum registry). Tasks
            not listed are learned from plain text only; the manifest and the report say which.
        weights: Relative frequency of each task's sentences (same length as ``tasks``);
            empty = uniform.
        shared: Sets of the evaluation vocabulary that the curriculum may use (any of
            :data:`SHAREABLE`: ``names``, ``places``, ``objects``); empty = the curriculum is
            disjoint from the evaluation's vocabulary. The evaluation's *templates* and prompts
            are held out either way. The words shared are listed in the suite manifest.
        first_steps: Length of an opening phase (steps ``0 … first_steps − 1``) in which the
            curriculum's sentences are drawn with ``first_weights`` instead of ``weights``
            (0 = no opening phase). A task that needs many examples to leave its loss plateau
            (IOI: docs/training.md) gets them early, then the mixture takes over.
        first_weights: Relative frequency of each task in the opening phase (same length as
            ``tasks``; a weight may be 0 there, at least one must be > 0).
    """

    fraction: float = 0.0
    tasks: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    shared: tuple[str, ...] = ()
    first_steps: int = 0
    first_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"curriculum fraction must be in [0, 1), got {self.fraction}")
        if self.fraction > 0 and not self.tasks:
            raise ConfigError("curriculum fraction > 0 needs at least one task in tasks")
        if self.weights and len(self.weights) != len(self.tasks):
            raise ConfigError(
                f"curriculum weights {list(self.weights)} do not match tasks {list(self.tasks)}"
            )
        if any(w <= 0 for w in self.weights):
            raise ConfigError(f"curriculum weights must be > 0, got {list(self.weights)}")
        if self.first_steps < 0:
            raise ConfigError(f"curriculum first_steps must be >= 0, got {self.first_steps}")
        if self.first_steps and len(self.first_weights) != len(self.tasks):
            raise ConfigError(
                f"curriculum first_weights {list(self.first_weights)} do not match tasks "
                f"{list(self.tasks)}"
            )
        if self.first_weights and (
            any(w < 0 for w in self.first_weights) or not any(w > 0 for w in self.first_weights)
        ):
            raise ConfigError(
                "curriculum first_weights must be >= 0 with at least one > 0, got "
                f"{list(self.first_weights)}"
            )
        unknown = [k for k in self.shared if k not in SHAREABLE]
        if unknown:
            raise ConfigError(
                f"curriculum shared vocabulary {unknown} is not shareable; choose from "
                f"{list(SHAREABLE)}"
            )

    def task_weights(self, step: int | None = None) -> tuple[float, ...]:
        """The weight of each task at ``step`` (uniform when ``weights`` is empty).

        Args:
            step: Optimiser step; None (or a step at or after ``first_steps``) gives the main
                phase's weights, a step before ``first_steps`` the opening phase's.
        """
        if step is not None and step < self.first_steps:
            return self.first_weights
        return self.weights or tuple(1.0 for _ in self.tasks)

    @property
    def active(self) -> bool:
        """Whether any templated text is mixed in."""
        return self.fraction > 0 and bool(self.tasks)


@dataclass(frozen=True)
class TrainConfig:
    """A suite training run.

    Attributes:
        sizes: Model sizes to train (names in :data:`SIZES`), one after the other.
        steps: Optimiser steps per size (the last checkpoint's step).
        batch_size: Sequences per step.
        seq_len: Tokens per sequence; ``tokens_per_step = batch_size × seq_len``.
        lr: Peak learning rate for every size; None uses each size's own ``lr``.
        min_lr_ratio: Final learning rate as a fraction of the peak (cosine decay, Pythia: 0.1).
        warmup_frac: Fraction of the steps spent in linear warm-up (Pythia: 0.01).
        weight_decay: AdamW weight decay (Pythia: 0.01).
        grad_clip: Gradient-norm clipping threshold (Pythia: 1.0).
        seed: Seed of the initialisation, the data order and the curriculum sentences.
        n_even: Number of evenly spaced checkpoints after the log-spaced early ones (Pythia: 143
            at every 1000 steps); see :func:`circuit_atlas.training.schedule.checkpoint_steps`.
        tokenizer: ``bpe`` (trained on the corpus) or ``pythia`` (GPT-NeoX-20B).
        vocab_size: BPE merges target (before forced single-token words); ignored for pythia.
        val_every: Every ``val_every``-th block of the token stream is held out for validation.
        val_batches: Held-out batches evaluated at each checkpoint (0 disables validation loss).
        state_every: Save a resumable ``last/`` state every this many steps (besides every
            checkpoint); 0 = only at checkpoints.
        corpus_bytes: Use only this many bytes of the corpus (every file contributes the same
            fraction of itself); None uses all of it.
        curriculum: Templated task text mixed into the stream.
        arch: Architecture of every size (:data:`ARCHITECTURES`): ``gpt_neox`` (Pythia's),
            ``gpt2`` or ``llama``. Recorded in the manifest (``architecture``) and in each
            checkpoint's ``config.json`` (``model_type``); a resumed run must use the same.
    """

    sizes: tuple[str, ...] = ("tiny", "small")
    steps: int = 2000
    batch_size: int = 16
    seq_len: int = 128
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.01
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    n_even: int = 8
    tokenizer: TokenizerKind = "bpe"
    vocab_size: int = 4096
    val_every: int = 100
    val_batches: int = 4
    state_every: int = 100
    corpus_bytes: int | None = None
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    arch: Architecture = "gpt_neox"

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ConfigError("sizes must name at least one model size")
        for name in self.sizes:
            get_size(name)
        if len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"sizes has duplicates: {list(self.sizes)}")
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "n_even": self.n_even,
            "val_every": self.val_every,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if self.n_even > self.steps:
            raise ConfigError(f"n_even ({self.n_even}) must not exceed steps ({self.steps})")
        if self.arch not in get_args(Architecture):
            raise ConfigError(
                f"arch must be one of {', '.join(get_args(Architecture))}, got {self.arch!r}"
            )
        if self.tokenizer not in ("bpe", "pythia"):
            raise ConfigError(f"tokenizer must be 'bpe' or 'pythia', got {self.tokenizer!r}")
        if self.vocab_size < 512:
            raise ConfigError(f"vocab_size must be >= 512, got {self.vocab_size}")

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimiser step (``batch_size × seq_len``)."""
        return self.batch_size * self.seq_len

    def peak_lr(self, size: str) -> float:
        """Peak learning rate of ``size`` (the run's ``lr``, else the size's own)."""
        return self.lr if self.lr is not None else get_size(size).lr

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-serialisable nested dicts (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config written by :meth:`to_dict` (e.g. from a suite manifest).

        Raises:
            ConfigError: If a key is unknown or a value invalid.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys: {unknown}")
        values = dict(data)
        if "sizes" in values:
            values["sizes"] = tuple(values["sizes"])
        cur = values.get("curriculum")
        if isinstance(cur, Mapping):
            values["curriculum"] = CurriculumConfig(
                fraction=float(cur.get("fraction", 0.0)),
                tasks=tuple(cur.get("tasks", ())),
                weights=tuple(cur.get("weights", ())),
                shared=tuple(cur.get("shared", ())),
                first_steps=int(cur.get("first_steps", 0)),
                first_weights=tuple(cur.get("first_weights", ())),
            )
        return cls(**values)

    def resume_key(self) -> dict[str, Any]:
        """The fields that must match for a run to resume another (everything but ``sizes``).

        A resumed run may add sizes; any other change would make later checkpoints differ.
        """
        key = self.to_dict()
        key.pop("sizes")
        return key
