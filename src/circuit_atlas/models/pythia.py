"""Registry of the Pythia suite: sizes, architectures, parameter counts and checkpoint steps.

Pythia (Biderman et al. 2023) is the model family the paper studies (PAPER.md §1). Every size was
trained for 143,000 steps of 1,024 sequences × 2,048 tokens and released at 154 checkpoints, each a
branch ``step{N}`` of the hub repository ``EleutherAI/pythia-<size>``.

Everything here is data: one :class:`PythiaModel` value per hub repository, built from one
:class:`PythiaArchitecture` per size. Nothing is downloaded; configs and specs are built from the
registry so that graphs and random models can be made from a name alone.

Sources of the numbers:

* Architectures: the hub ``config.json`` of each repository (``num_hidden_layers``,
  ``num_attention_heads``, ``hidden_size``, ``intermediate_size = 4 * hidden_size``,
  ``vocab_size``, ``rotary_pct = 0.25``, ``rotary_emb_base = 10000``,
  ``use_parallel_residual = true``, ``max_position_embeddings = 2048``, untied embeddings).
  The padded vocabulary is 50,304 rows except for 6.9b (50,432) and 12b (50,688).
* Parameter counts: the Pythia paper's Table 1 / model cards (total, embeddings included); the
  formula in :func:`count_parameters` reproduces every one of them exactly (see the tests).
* Steps and tokens per step: ``get_ckpts`` and ``steps2tokens`` of curt-tigges/circuits-over-time.
* 14m and 31m have no ``-deduped`` variant on the hub. The PolyPythias runs (van der Wal et al.,
  ICLR 2025; their model cards) retrain 14m-410m with seeds 1-9 (``pythia-<size>-seed<N>``) and
  160m with only the data order (``-data-seed1..3``) or only the initialisation
  (``-weight-seed1..3``) changed, with the same 154 checkpoints. The dropout variants of 160m are
  the ones configured in circuits-over-time (PAPER.md §1); their checkpoint list is assumed to be
  Pythia's [R].
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from circuit_atlas.errors import InvalidCheckpointError, UnknownNameError
from circuit_atlas.models.spec import ModelSpec
from circuit_atlas.models.steps import validate_step

__all__ = [
    "POLYPYTHIA_SEEDS",
    "POLYPYTHIA_SIZES",
    "PYTHIA_ARCHITECTURES",
    "PYTHIA_FINAL_STEP",
    "PYTHIA_MODELS",
    "PYTHIA_SIZES",
    "PYTHIA_STEPS",
    "TOKENS_PER_STEP",
    "PythiaArchitecture",
    "PythiaModel",
    "count_parameters",
    "get_pythia",
    "list_pythia_models",
    "pythia_config",
    "pythia_spec",
    "steps_to_tokens",
]

HUB_ORG = "EleutherAI"
"""Hub organisation that publishes Pythia."""

SEQUENCES_PER_STEP = 1024
"""Sequences per optimiser step (the Pythia batch)."""

SEQUENCE_LENGTH = 2048
"""Tokens per training sequence."""

TOKENS_PER_STEP = SEQUENCES_PER_STEP * SEQUENCE_LENGTH
"""Training tokens per optimiser step: 1,024 × 2,048 = 2,097,152 (``steps2tokens``)."""

PYTHIA_FINAL_STEP = 143_000
"""Last checkpoint step (the hub's ``main`` revision)."""

PYTHIA_STEPS: tuple[int, ...] = (
    (0,) + tuple(2**i for i in range(10)) + tuple(range(1000, PYTHIA_FINAL_STEP + 1, 1000))
)
"""The 154 released checkpoint steps: 0, 1, 2, 4, …, 512, then 1,000 … 143,000 every 1,000."""


@dataclass(frozen=True)
class PythiaArchitecture:
    """Architecture of one Pythia size (identical for its standard and deduped repositories).

    Attributes:
        size: Size label as in the repository name, e.g. ``70m``.
        n_layers: Transformer blocks (``num_hidden_layers``).
        n_heads: Attention heads per block (``num_attention_heads``).
        d_model: Residual-stream width (``hidden_size``).
        vocab_size: Rows of the (padded) embedding and unembedding matrices.
        published_params: Total parameter count as published (embeddings included).
        max_positions: Context length in tokens (``max_position_embeddings``).
        rotary_pct: Fraction of each head's dimensions that receive rotary embeddings.
        rotary_base: Rotary base frequency.
        layer_norm_eps: LayerNorm epsilon.
    """

    size: str
    n_layers: int
    n_heads: int
    d_model: int
    vocab_size: int
    published_params: int
    max_positions: int = SEQUENCE_LENGTH
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    layer_norm_eps: float = 1e-5

    @property
    def d_mlp(self) -> int:
        """MLP hidden width, always ``4 * d_model`` in Pythia."""
        return 4 * self.d_model

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def n_params(self) -> int:
        """Total parameters computed by :func:`count_parameters` from this architecture."""
        return count_parameters(self.n_layers, self.d_model, self.vocab_size, d_mlp=self.d_mlp)


def count_parameters(
    n_layers: int, d_model: int, vocab_size: int, *, d_mlp: int | None = None
) -> int:
    """Count the parameters of a GPT-NeoX model with biases and untied embeddings.

    Per block: two LayerNorms (``4·d``), the fused QKV projection (``3d² + 3d``), the attention
    output (``d² + d``) and the MLP (``2·d·d_mlp + d_mlp + d``); plus the input embedding and the
    unembedding (``V·d`` each) and the final LayerNorm (``2d``). With ``d_mlp = 4d`` this is
    ``L·(12d² + 13d) + 2·V·d + 2d``. Rotary frequencies are buffers, not parameters.

    Args:
        n_layers: Transformer blocks.
        d_model: Residual-stream width.
        vocab_size: Embedding rows (the padded vocabulary).
        d_mlp: MLP hidden width; ``4 * d_model`` when omitted.

    Returns:
        The total parameter count, embeddings included.
    """
    d, f = d_model, 4 * d_model if d_mlp is None else d_mlp
    per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * f + f + d)
    return n_layers * per_layer + 2 * vocab_size * d + 2 * d


PYTHIA_ARCHITECTURES: Mapping[str, PythiaArchitecture] = types.MappingProxyType(
    {
        arch.size: arch
        for arch in (
            PythiaArchitecture("14m", 6, 4, 128, 50304, 14_067_712),
            PythiaArchitecture("31m", 6, 8, 256, 50304, 30_494_720),
            PythiaArchitecture("70m", 6, 8, 512, 50304, 70_426_624),
            PythiaArchitecture("160m", 12, 12, 768, 50304, 162_322_944),
            PythiaArchitecture("410m", 24, 16, 1024, 50304, 405_334_016),
            PythiaArchitecture("1b", 16, 8, 2048, 50304, 1_011_781_632),
            PythiaArchitecture("1.4b", 24, 16, 2048, 50304, 1_414_647_808),
            PythiaArchitecture("2.8b", 32, 32, 2560, 50304, 2_775_208_960),
            PythiaArchitecture("6.9b", 32, 32, 4096, 50432, 6_857_302_016),
            PythiaArchitecture("12b", 36, 40, 5120, 50688, 11_846_072_320),
        )
    }
)
"""Architecture of every Pythia size, keyed by size label (``70m``, ``1.4b``, …)."""

PYTHIA_SIZES: tuple[str, ...] = tuple(PYTHIA_ARCHITECTURES)
"""Size labels from smallest to largest."""


@dataclass(frozen=True)
class PythiaModel:
    """One Pythia hub repository.

    Attributes:
        name: Registry name, e.g. ``pythia-70m`` or ``pythia-70m-deduped``.
        repo_id: Hub repository, e.g. ``EleutherAI/pythia-70m``.
        architecture: The size's :class:`PythiaArchitecture`.
        variant: ``standard``, ``deduped`` (trained on the deduplicated Pile), or a seed/dropout
            variant label such as ``seed1`` or ``alldropout``.
        steps: Checkpoint steps released as ``step{N}`` branches.
    """

    name: str
    repo_id: str
    architecture: PythiaArchitecture
    variant: str = "standard"
    steps: tuple[int, ...] = PYTHIA_STEPS

    @property
    def size(self) -> str:
        """Size label (``70m``, …)."""
        return self.architecture.size

    @property
    def n_params(self) -> int:
        """Total parameter count (embeddings included)."""
        return self.architecture.n_params

    @property
    def final_step(self) -> int:
        """Last released step."""
        return self.steps[-1]

    def revision(self, step: int) -> str:
        """Return the hub branch of a checkpoint, ``step{N}``, after validating ``step``.

        Raises:
            InvalidCheckpointError: If ``step`` is not one of :attr:`steps`.
        """
        return f"step{validate_step(step, self.steps, model=self.name)}"

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a JSON-serialisable dict (steps omitted)."""
        return {
            "name": self.name,
            "repo_id": self.repo_id,
            "variant": self.variant,
            "n_params": self.n_params,
            "architecture": asdict(self.architecture),
        }


POLYPYTHIA_SIZES: tuple[str, ...] = ("14m", "31m", "70m", "160m", "410m")
"""Pythia sizes retrained with nine more seeds (PolyPythias, van der Wal et al., ICLR 2025)."""

POLYPYTHIA_SEEDS: tuple[int, ...] = tuple(range(1, 10))
"""PolyPythias seeds: ``EleutherAI/pythia-<size>-seed<N>``; seed 0 is the original run."""

# Variants of pythia-160m with only the data order or only the initialisation changed
# (PolyPythias), or trained with dropout (configs in circuits-over-time).
_VARIANTS_160M = tuple(
    f"{kind}{i}" for kind in ("data-seed", "weight-seed") for i in (1, 2, 3)
) + ("alldropout", "attndropout", "hiddendropout")

_NO_DEDUPED = frozenset({"14m", "31m"})


def _build_registry() -> dict[str, PythiaModel]:
    entries: list[PythiaModel] = []
    for arch in PYTHIA_ARCHITECTURES.values():
        variants = ("standard",) if arch.size in _NO_DEDUPED else ("standard", "deduped")
        for variant in variants:
            suffix = "" if variant == "standard" else f"-{variant}"
            name = f"pythia-{arch.size}{suffix}"
            entries.append(PythiaModel(name, f"{HUB_ORG}/{name}", arch, variant))
    for size in POLYPYTHIA_SIZES:
        for seed in POLYPYTHIA_SEEDS:
            name = f"pythia-{size}-seed{seed}"
            entries.append(
                PythiaModel(name, f"{HUB_ORG}/{name}", PYTHIA_ARCHITECTURES[size], f"seed{seed}")
            )
    for variant in _VARIANTS_160M:
        name = f"pythia-160m-{variant}"
        entries.append(
            PythiaModel(name, f"{HUB_ORG}/{name}", PYTHIA_ARCHITECTURES["160m"], variant)
        )
    return {entry.name: entry for entry in entries}


PYTHIA_MODELS: Mapping[str, PythiaModel] = types.MappingProxyType(_build_registry())
"""Every known Pythia repository keyed by name (``pythia-70m``, ``pythia-70m-deduped``, …)."""


def list_pythia_models(*, variant: str | None = None) -> list[str]:
    """Return the registry names, optionally only one ``variant`` (``standard``, ``deduped``…)."""
    return [n for n, m in PYTHIA_MODELS.items() if variant is None or m.variant == variant]


def get_pythia(name: str) -> PythiaModel:
    """Look up a Pythia model by name.

    Accepts the registry name (``pythia-70m``), the hub id (``EleutherAI/pythia-70m``) and any
    capitalisation (``Pythia-1.4B``).

    Raises:
        UnknownNameError: If the name is not in the registry; the message lists the valid names.
    """
    key = str(name).strip().lower()
    org_prefix = HUB_ORG.lower() + "/"
    key = key[len(org_prefix) :] if key.startswith(org_prefix) else key
    try:
        return PYTHIA_MODELS[key]
    except KeyError:
        valid = ", ".join(PYTHIA_MODELS)
        raise UnknownNameError(f"unknown Pythia model {name!r}; valid names: {valid}") from None


def steps_to_tokens(step: int) -> int:
    """Convert a Pythia training step into training tokens seen (``step × 2,097,152``).

    Reproduces ``steps2tokens`` of circuits-over-time; step 143,000 is 299,892,736,000 tokens.

    Raises:
        InvalidCheckpointError: If ``step`` is negative or not an integer.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InvalidCheckpointError(f"step {step!r} must be a non-negative integer")
    return step * TOKENS_PER_STEP


def pythia_config(name: str) -> Any:
    """Build the ``transformers.GPTNeoXConfig`` of a Pythia model without downloading anything.

    Args:
        name: A Pythia registry name or hub id (see :func:`get_pythia`).

    Returns:
        A ``GPTNeoXConfig`` equal in architecture to the hub ``config.json`` (bos/eos id 0,
        untied embeddings, parallel residual, GeLU, partial rotary).

    Raises:
        UnknownNameError: For an unknown name.
    """
    from transformers import GPTNeoXConfig

    arch = get_pythia(name).architecture
    return GPTNeoXConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.d_model,
        num_hidden_layers=arch.n_layers,
        num_attention_heads=arch.n_heads,
        intermediate_size=arch.d_mlp,
        hidden_act="gelu",
        max_position_embeddings=arch.max_positions,
        layer_norm_eps=arch.layer_norm_eps,
        rotary_pct=arch.rotary_pct,
        rotary_emb_base=arch.rotary_base,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )


def pythia_spec(name: str) -> ModelSpec:
    """Return the :class:`~circuit_atlas.models.spec.ModelSpec` of a Pythia model by name.

    Raises:
        UnknownNameError: For an unknown name.
    """
    from circuit_atlas.models.neox import neox_spec  # torch is imported only when needed

    return neox_spec(pythia_config(name))
