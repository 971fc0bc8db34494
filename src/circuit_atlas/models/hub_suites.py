"""The registry of checkpoint suites on the Hugging Face hub: one :class:`HubSuite` value each.

A suite is a family of training runs whose intermediate checkpoints are hub branches: which
repository holds each size (and each seed, where the suite has several training runs), the
architecture (a key of :data:`circuit_atlas.models.adapters.ADAPTERS`), how a branch name maps to
a step and to tokens seen (a :class:`~circuit_atlas.models.revisions.RevisionScheme`), and the
tokens per optimiser step where the publisher gives it.

Where the checkpoints come from: Pythia publishes a fixed list of 154 steps
(:data:`~circuit_atlas.models.pythia.PYTHIA_STEPS`), used as is; every other suite's list is
its repository's branch list, read by
:func:`~circuit_atlas.models.revisions.list_repo_revisions` (the hub, cached with the results,
or the local hub cache offline), never guessed. Named schedules
(:mod:`circuit_atlas.models.schedules`) apply to any suite's steps.

A model of a suite is named ``<suite>-<size>`` (``pythia-160m``, ``olmo-1b``,
``crfm-gpt2-small``); a seed other than the suite's original run adds ``-seed<N>``
(``pythia-160m-seed1``: the PolyPythias run of seed 1, its hub name). docs/suites.md lists which
entries were checked against the model cards and which were not.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from circuit_atlas.errors import UnknownNameError, UnsupportedArchitectureError
from circuit_atlas.models.pythia import (
    POLYPYTHIA_SEEDS,
    POLYPYTHIA_SIZES,
    PYTHIA_SIZES,
    PYTHIA_STEPS,
    TOKENS_PER_STEP,
)
from circuit_atlas.models.revisions import (
    HubCheckpoint,
    PathLike,
    RevisionScheme,
    get_revision_scheme,
    list_repo_revisions,
)

__all__ = [
    "HUB_SUITES",
    "POLYPYTHIA_SEEDS",
    "POLYPYTHIA_SIZES",
    "HubModel",
    "HubSuite",
    "get_hub_suite",
    "list_hub_models",
    "resolve_hub_model",
]

@dataclass(frozen=True)
class HubSuite:
    """One checkpoint suite on the hub.

    Attributes:
        name: Registry key and model-name prefix (``pythia``, ``olmo``, ...).
        description: What the suite is.
        architecture: HF ``model_type`` of its checkpoints (an adapter key when supported).
        revisions: Name of its :class:`~circuit_atlas.models.revisions.RevisionScheme`.
        repos: Size → seed → hub repository. The suite's original run is ``default_seed``.
        repo_pattern: The naming pattern of ``repos``, for documentation.
        default_seed: Seed of the original run (its model name has no ``-seed`` suffix).
        tokens_per_step: Size → training tokens per optimiser step, where published.
        published_steps: A fixed, published checkpoint list (Pythia); None: the branch list.
        verified: What was checked against the model cards, and where.
    """

    name: str
    description: str
    architecture: str
    revisions: str
    repos: Mapping[str, Mapping[int, str]]
    repo_pattern: str
    default_seed: int = 0
    tokens_per_step: Mapping[str, int] = field(default_factory=dict)
    published_steps: tuple[int, ...] | None = None
    verified: str = ""

    @property
    def sizes(self) -> tuple[str, ...]:
        """Size labels, as registered (smallest first)."""
        return tuple(self.repos)

    @property
    def scheme(self) -> RevisionScheme:
        """The suite's branch-name scheme."""
        return get_revision_scheme(self.revisions)

    @property
    def supported(self) -> bool:
        """Whether circuit-atlas has an adapter for :attr:`architecture`."""
        from circuit_atlas.models.adapters import ADAPTERS

        return self.architecture in ADAPTERS

    def seeds(self, size: str) -> tuple[int, ...]:
        """The seeds (training runs) of ``size``, ascending.

        Raises:
            UnknownNameError: For a size the suite lacks (lists the sizes).
        """
        return tuple(sorted(self._size(size)))

    def _size(self, size: str) -> Mapping[int, str]:
        try:
            return self.repos[str(size).lower()]
        except KeyError:
            raise UnknownNameError(f"suite {self.name!r} has no size {size!r}; sizes: "
                                   f"{', '.join(self.sizes)}") from None

    def model(self, size: str, seed: int | None = None) -> HubModel:
        """The :class:`HubModel` of one size and seed (default: the original run).

        Raises:
            UnknownNameError: For an unknown size or a seed the size lacks (lists the seeds).
        """
        seed = self.default_seed if seed is None else seed
        runs = self._size(size)
        if isinstance(seed, bool) or seed not in runs:
            raise UnknownNameError(f"{self.name}-{size} has no seed {seed!r}; seeds: "
                                   f"{', '.join(map(str, sorted(runs)))}")
        size = str(size).lower()
        base = f"{self.name}-{size}"
        name = base if seed == self.default_seed else f"{base}-seed{seed}"
        return HubModel(self, size, int(seed), runs[seed], name, base)

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON-serialisable dict (repositories listed, steps omitted)."""
        return {"name": self.name, "description": self.description,
                "architecture": self.architecture, "supported": self.supported,
                "revisions": self.revisions, "repo_pattern": self.repo_pattern,
                "repos": {s: {str(k): v for k, v in r.items()} for s, r in self.repos.items()},
                "default_seed": self.default_seed, "tokens_per_step": dict(self.tokens_per_step),
                "published_steps": self.published_steps is not None, "verified": self.verified}


@dataclass(frozen=True)
class HubModel:
    """One training run of one size of a :class:`HubSuite`.

    Attributes:
        suite: The suite.
        size: Size label.
        seed: Seed of the run.
        repo_id: Its hub repository.
        name: Model name (``<suite>-<size>`` plus ``-seed<N>`` for a non-original seed).
        base_name: ``<suite>-<size>``: the name shared by every seed of the size.
    """

    suite: HubSuite
    size: str
    seed: int
    repo_id: str
    name: str
    base_name: str

    @property
    def tokens_per_step(self) -> int | None:
        """Published training tokens per optimiser step, else None."""
        return self.suite.tokens_per_step.get(self.size)

    def checkpoints(self, *, revisions_dir: PathLike | None = None,
                    hub_cache_dir: PathLike | None = None, refresh: bool = False
                    ) -> list[HubCheckpoint]:
        """The run's checkpoints, by step: the published list, or the hub's branch list.

        Args:
            revisions_dir: Cache of branch lists (see
                :func:`~circuit_atlas.models.revisions.list_repo_revisions`).
            hub_cache_dir: The Hugging Face hub cache.
            refresh: Ask the hub again even if a list is cached.

        Raises:
            RevisionListError: When the branch list is needed and no source has it.
            ModelSourceError: When two branches name the same step.
        """
        per_step = self.tokens_per_step
        if self.suite.published_steps is not None:
            return [HubCheckpoint(s, f"step{s}", None if per_step is None else s * per_step)
                    for s in self.suite.published_steps]
        listing = list_repo_revisions(self.repo_id, revisions_dir=revisions_dir,
                                      hub_cache_dir=hub_cache_dir, refresh=refresh)
        return self.suite.scheme.checkpoints(listing.branches, per_step)

    def require_adapter(self) -> None:
        """Raise unless circuit-atlas can load this architecture.

        Raises:
            UnsupportedArchitectureError: Naming the suite and its ``model_type``.
        """
        if not self.suite.supported:
            from circuit_atlas.models.adapters import supported_model_types

            raise UnsupportedArchitectureError(
                f"suite {self.suite.name!r} ({self.repo_id}) has model_type "
                f"{self.suite.architecture!r}, which has no architecture adapter yet; supported: "
                f"{', '.join(supported_model_types())}")


def _runs(pattern: str, sizes: Iterable[str], seeds: Mapping[str, Iterable[int]] | None = None,
          seed_pattern: str | None = None, default_seed: int = 0) -> dict[str, dict[int, str]]:
    """Size → seed → repository from a pattern with ``{size}`` (and ``{seed}``) fields."""
    out: dict[str, dict[int, str]] = {}
    for size in sizes:
        out[size] = {default_seed: pattern.format(size=size)}
        for seed in (seeds or {}).get(size, ()):
            out[size][seed] = str(seed_pattern).format(size=size, seed=seed)
    return out


_CRFM_RUNS = {  # Mistral (stanford-crfm/mistral) GPT-2 runs: <run>-gpt2-<size>-x<seed>
    "small": {21: "alias", 49: "battlestar", 81: "caprica", 343: "darkmatter", 777: "expanse"},
    "medium": {21: "arwen", 49: "beren", 81: "celebrimbor", 343: "durin", 777: "eowyn"},
}

HUB_SUITES: Mapping[str, HubSuite] = types.MappingProxyType({
    s.name: s
    for s in (
        HubSuite(
            "pythia", "Pythia (Biderman et al. 2023) and the PolyPythias seeds (van der Wal et "
            "al. 2025): 300B Pile tokens, 154 checkpoints", "gpt_neox", "step",
            _runs("EleutherAI/pythia-{size}", PYTHIA_SIZES,
                  {size: POLYPYTHIA_SEEDS for size in POLYPYTHIA_SIZES},
                  "EleutherAI/pythia-{size}-seed{seed}"),
            "EleutherAI/pythia-{size}, EleutherAI/pythia-{size}-seed{seed} (seeds 1-9, "
            "14m-410m)", tokens_per_step={size: TOKENS_PER_STEP for size in PYTHIA_SIZES},
            published_steps=PYTHIA_STEPS,
            verified="PolyPythias model cards (pythia-410m-seed3, -seed9, pythia-14m-seed1): "
                     "seeds 1-9 for 14m-410m, 154 step{N} branches; seed 0 = the original run"),
        HubSuite(
            "olmo", "OLMo 1 (Groeneveld et al. 2024), HF-format repositories", "olmo",
            "step-tokens", {"1b": {0: "allenai/OLMo-1B-hf"}, "7b": {0: "allenai/OLMo-7B-0424-hf"}},
            "allenai/OLMo-{1B-hf,7B-0424-hf}",
            verified="OLMo-1B card: branches step{N}-tokens{M}B listed by list_repo_refs; "
                     "OLMo-1B-hf discussion #3: its checkpoints were uploaded. Not verified: "
                     "the branches of OLMo-7B-0424-hf"),
        HubSuite(
            "olmo-2", "OLMo 2 (OLMo et al. 2025), stage-1 pretraining checkpoints", "olmo2",
            "stage1-step-tokens",
            {"1b": {0: "allenai/OLMo-2-0425-1B"}, "7b": {0: "allenai/OLMo-2-1124-7B"},
             "13b": {0: "allenai/OLMo-2-1124-13B"}},
            "allenai/OLMo-2-{0425-1B,1124-7B,1124-13B}",
            verified="OLMo-2-1124-7B card and discussion #6: stage1-step{N}-tokens{M}B and "
                     "unprefixed step{N}-tokens{M}B branches. Not verified: the 1B and 13B "
                     "repository names. No adapter: model_type olmo2 is not supported yet"),
        HubSuite(
            "crfm-gpt2", "Stanford CRFM Mistral GPT-2 runs, five seeds per size, 400k steps",
            "gpt2", "checkpoint",
            {size: {seed: f"stanford-crfm/{run}-gpt2-{size}-x{seed}" for seed, run in runs.items()}
             for size, runs in _CRFM_RUNS.items()},
            "stanford-crfm/{run}-gpt2-{size}-x{seed}", default_seed=21,
            verified="hub pages of alias-gpt2-small-x21, caprica-gpt2-small-x81 and "
                     "celebrimbor-gpt2-medium-x81 ('checkpoint-N contents', 400k steps). Not "
                     "verified: the other run names, and that checkpoint-N are branches"),
        HubSuite(
            "smollm2", "SmolLM2 (Allal et al. 2025) intermediate checkpoints, ~250B tokens "
            "apart", "llama", "step-dash",
            {size: {0: f"HuggingFaceTB/SmolLM2-{label}-intermediate-checkpoints"}
             for size, label in (("135m", "135M"), ("360m", "360M"), ("1.7b", "1.7B"))},
            "HuggingFaceTB/SmolLM2-{135M,360M,1.7B}-intermediate-checkpoints",
            tokens_per_step={"135m": 1_048_576, "1.7b": 2_097_152},
            verified="the three model cards: step-{N} revisions; global batch 1,048,576 "
                     "tokens (135M) and 2,097,152 (1.7B). Not verified: the 360M batch"),
        HubSuite(
            "amber", "LLM360 Amber 7B (Liu et al. 2023), 360 checkpoints over 1.26T tokens",
            "llama", "ckpt", {"7b": {0: "LLM360/Amber"}}, "LLM360/Amber",
            verified="Amber model card: revisions ckpt_000 ... ckpt_359; the step is the "
                     "checkpoint index. Not verified: tokens per checkpoint"),
    )
})
"""Every registered hub suite by name."""


def get_hub_suite(name: str) -> HubSuite:
    """Look up a suite by name (case-insensitive).

    Raises:
        UnknownNameError: For an unknown name; the message lists the suites.
    """
    try:
        return HUB_SUITES[str(name).strip().lower()]
    except KeyError:
        raise UnknownNameError(f"unknown hub suite {name!r}; suites: "
                               f"{', '.join(HUB_SUITES)}") from None


def list_hub_models() -> list[str]:
    """Every ``<suite>-<size>`` name, suite by suite."""
    return [f"{s.name}-{size}" for s in HUB_SUITES.values() for size in s.sizes]


def resolve_hub_model(name: str, seed: int | None = None) -> HubModel:
    """The :class:`HubModel` of a ``<suite>-<size>`` name (``pythia-160m``, ``olmo-1b``).

    Args:
        name: ``<suite>-<size>`` or ``<suite>-<size>-seed<N>``, any capitalisation.
        seed: Training run (default: the suite's original run).

    Raises:
        UnknownNameError: For an unknown name (lists the valid ones) or seed (lists the seeds).
    """
    key = str(name).strip().lower()
    named_seed = re.fullmatch(r"(?P<base>.+)-seed(?P<seed>\d+)", key)
    for base, run in ((key, seed), *(((named_seed["base"], int(named_seed["seed"])),)
                                     if named_seed and seed is None else ())):
        for suite in sorted(HUB_SUITES.values(), key=lambda s: -len(s.name)):  # olmo-2 first
            prefix = suite.name + "-"
            if base.startswith(prefix) and base[len(prefix):] in suite.repos:
                return suite.model(base[len(prefix):], run)
    raise UnknownNameError(f"unknown hub model {name!r}; valid: {', '.join(list_hub_models())}")
