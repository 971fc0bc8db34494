"""Decompose one checkpoint's IOI behaviour into the paper's algorithm (PAPER.md §5, Figure 4).

Source followed: curt-tigges/circuits-over-time ``get_ioi_consistency.py``. On the IOI prompts
(clean vs S2→IO corrupted), with McDougall's path patching in the noising direction
(:mod:`circuit_atlas.components.path_patching`):

- **B** every head → final residual stream (direct effect); name movers, negative name movers,
  CS and negative CS heads (:func:`~circuit_atlas.components.algorithm.roles.direct_roles`);
  % effect of their union;
- **C** every head → the name movers' queries; candidates below −0.001 that pass the "token
  same, position opposite" test are the S2I heads
  (:func:`~circuit_atlas.components.s_inhibition.s_inhibition_heads`); % effect of the S2I heads
  (effects through the queries);
- **D** every head → the values of the pure S2I heads (not CS heads), at every position; heads
  below −0.001 with an induction or duplicate-token score above the mean; % effect.

The % is :func:`~circuit_atlas.components.algorithm.roles.pct_effect` with the circuit (default)
or all heads as denominator. Everything is *undefined* (None, with a reason) when the
clean–corrupted gap is within noise (:class:`~circuit_atlas.faithfulness.Baselines`' rule: the
gap must exceed ``gap_abs_tol`` logits and ``gap_n_se`` standard errors of the clean mean);
panels C and D when there is no name mover, D when there is no pure S2I head.

Each defined % gets a bootstrap interval over prompts (:mod:`.intervals`), from the per-prompt
logit-difference changes of the same sweeps (the heads of each role fixed).

Reuse: the component scores (copy, negative copy, CSPA, induction, duplicate-token) and the
S-inhibition result of the unit's component analysis are passed in, not recomputed; the
S-inhibition sweep is rerun only when its name movers (copy score > 10 %) differ from the
decomposition's (copy score > 10 % *and* negative direct effect). Every sweep shares one
:class:`~circuit_atlas.components.path_sweep.RunCache` (the clean and corrupted runs are
recorded once, also across the component analysis' S-inhibition sweeps), and the self-repair
experiment reuses the direct-effect sweep's clean run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from circuit_atlas.analyses.uncertainty import CI_LEVEL, N_RESAMPLES
from circuit_atlas.components.algorithm.intervals import ShareInterval, pct_effect_interval
from circuit_atlas.components.algorithm.repair import SelfRepair, self_repair
from circuit_atlas.components.algorithm.roles import (
    PANELS,
    ROLES,
    AlgorithmSettings,
    HeadScores,
    PctEffect,
    direct_roles,
    pct_effect,
    primary_roles,
    tertiary_heads,
)
from circuit_atlas.components.path_patching import direct_effects, path_patching_effects
from circuit_atlas.components.path_sweep import Head, RunCache
from circuit_atlas.components.s_inhibition import (
    SInhibitionResult,
    s_inhibition_heads,
    token_same_position_opposite,
)
from circuit_atlas.faithfulness import Baselines
from circuit_atlas.tasks.base import TaskDataset

__all__ = ["IOIAlgorithm", "circuit_heads", "compute_head_scores", "ioi_algorithm"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IOIAlgorithm:
    """The IOI algorithm of one checkpoint (Figure 4 B–D) and its self-repair experiment.

    Effects are ``(L, h)`` float64 CPU tensors of the noising metric (patched − clean) /
    (clean − corrupted) of the mean logit difference; NaN where not computed (everything when the
    gap is undefined; C without name movers; D without pure S2I heads).

    Attributes:
        direct_effect: Each head → final residual stream at END (B).
        s_inhibition_effect: Each head → the name movers' queries (C).
        tertiary_effect: Each head → the pure S2I heads' values, every position (D).
        roles: Role (:data:`~circuit_atlas.components.algorithm.roles.ROLES`) → ``(L, h)`` bool.
        panels: ``direct``, ``s_inhibition``, ``tertiary`` → :class:`PctEffect`.
        clean_logit_diff: Mean clean logit difference (logits).
        corrupted_logit_diff: Mean corrupted logit difference.
        clean_logit_diff_std: Its standard deviation over prompts.
        n_examples: Prompts.
        gap_defined: Whether the clean–corrupted gap is beyond noise.
        circuit: The IOI circuit's heads used as denominator (None: no faithful circuit).
        s_inhibition: The S-inhibition result through the name movers' queries (None when not
            computed).
        self_repair: The self-repair experiment (None when not run).
        settings: The settings used.
        timings: Seconds per stage (``direct``, ``s_inhibition``, ``tertiary``, ``self_repair``,
            ``intervals``).
        intervals: Panel → :class:`~circuit_atlas.components.algorithm.intervals.ShareInterval`,
            the bootstrap interval over prompts of its % effect (``reason`` set where there is
            none: the panel's undefined reason, or ``no_per_prompt_effects``).
    """

    direct_effect: Tensor
    s_inhibition_effect: Tensor
    tertiary_effect: Tensor
    roles: dict[str, Tensor]
    panels: dict[str, PctEffect]
    clean_logit_diff: float
    corrupted_logit_diff: float
    clean_logit_diff_std: float
    n_examples: int
    gap_defined: bool
    circuit: tuple[Head, ...] | None
    s_inhibition: SInhibitionResult | None
    self_repair: SelfRepair | None
    settings: AlgorithmSettings
    timings: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, ShareInterval] = field(default_factory=dict)

    @property
    def name_movers(self) -> tuple[Head, ...]:
        """The name movers (copy score > 10 %, negative direct effect), sorted."""
        return _heads_of(self.roles["name_mover"])

    def heads(self, role: str) -> tuple[Head, ...]:
        """The heads with ``role`` (sorted)."""
        return _heads_of(self.roles[role])

    def primary_roles(self) -> list[list[str | None]]:
        """``[layer][head]`` → the head's first role in priority order, or None."""
        return primary_roles(self.roles)


def _heads_of(mask: Tensor) -> tuple[Head, ...]:
    return tuple((int(a), int(b)) for a, b in mask.nonzero().tolist())


def circuit_heads(result: Any, threshold: float | None = None) -> tuple[Head, ...] | None:
    """The heads of a circuit result when it is a faithful minimal circuit, else None.

    Args:
        result: A :class:`~circuit_atlas.result.CircuitResult` (``node_names``,
            ``node_in_circuit``, ``faithfulness``, ``n_edges``, ``settings["threshold"]``).
        threshold: Faithfulness the circuit must reach (default: the search's threshold).

    Returns:
        The in-circuit heads ``(layer, head)`` sorted, or None when faithfulness is undefined,
        below the threshold, or the circuit is empty (the stored circuit is then the search's
        fallback and says nothing about the heads).
    """
    threshold = result.settings.get("threshold", 0.8) if threshold is None else threshold
    if result.faithfulness is None or result.faithfulness < threshold or int(result.n_edges) == 0:
        return None
    inside = result.node_in_circuit.tolist()
    heads = []
    for name, kept in zip(result.node_names, inside, strict=True):
        if kept and name.startswith("a") and ".h" in name:
            layer, head = name[1:].split(".h")
            heads.append((int(layer), int(head)))
    return tuple(sorted(heads))


def compute_head_scores(model, data: TaskDataset, settings: Any = None, *,
                        data_dir: str | Path | None = None) -> HeadScores:  # fmt: skip
    """Compute the component scores the decomposition needs, for a standalone call.

    Copy scores are computed on ``data`` itself; induction, duplicate-token and CSPA scores
    with the given component settings (CSPA reads the corpus of ``data_dir``).

    Args:
        model: The model (with a tokenizer for CSPA).
        data: IOI prompts.
        settings: :class:`~circuit_atlas.components.ComponentSettings` (default: the paper's).
        data_dir: Data directory of the CSPA corpus.

    Returns:
        The :class:`HeadScores` (``successor`` None).

    Raises:
        circuit_atlas.errors.ComponentDataError: Without a tokenizer or corpus sample for CSPA.
        circuit_atlas.errors.DataNotFoundError: If the corpus is missing.
    """
    from circuit_atlas.components import ComponentSettings, score_heads
    from circuit_atlas.components.copy_score import copy_score_pair

    s = settings or ComponentSettings()
    rows = score_heads(model, ComponentSettings(**{
        **s.__dict__, "scores": ("induction", "duplicate_token", "copy_suppression")}),
        data_dir=data_dir)  # fmt: skip
    found = HeadScores.from_rows(rows, model.spec.n_layers, model.spec.n_heads)
    copy, negative = copy_score_pair(model, data, top_k=s.copy_top_k)
    return HeadScores(
        copy=copy.double(),
        negative_copy=negative.double(),
        cspa=found.cspa, induction=found.induction, duplicate_token=found.duplicate_token,
    )  # fmt: skip


def _nan(shape: tuple[int, int]) -> Tensor:
    return torch.full(shape, float("nan"), dtype=torch.float64)


@torch.no_grad()
def ioi_algorithm(
    model,
    data: TaskDataset,
    *,
    scores: HeadScores | None = None,
    circuit: Collection[Head] | None = None,
    settings: AlgorithmSettings | None = None,
    s_inhibition: SInhibitionResult | None = None,
    run_self_repair: bool = True,
    component_settings: Any = None,
    data_dir: str | Path | None = None,
    cache: RunCache | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> IOIAlgorithm:
    """Decompose one loaded checkpoint's IOI behaviour into the paper's algorithm (Figure 4).

    Example::

        import circuit_atlas as ca

        model = ca.load_model("pythia-160m", step=143000)
        data = ca.make_dataset("ioi", model.tokenizer)
        result = ca.find_circuit(model, data)
        algo = ca.ioi_algorithm(model, data, circuit=circuit_heads(result))
        algo.panels["direct"].value        # % effect of NMH/CS heads (Figure 4 B)

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: IOI prompts (clean vs S2→IO corrupted; ``info`` with ``io_pos``/``s1_pos``/
            ``s2_pos`` when the copy scores are computed here).
        scores: The component scores (:class:`HeadScores`, e.g. ``HeadScores.from_rows`` of
            the unit's component rows); None computes them (:func:`compute_head_scores`).
        circuit: Heads of the faithful IOI circuit (:func:`circuit_heads`); None = none, which
            makes every % undefined under the ``circuit`` denominator.
        settings: :class:`AlgorithmSettings` (default: the paper's, circuit denominator).
        s_inhibition: An S-inhibition result to reuse (computed on ``data`` with
            ``settings.s_inhibition_positions``); used only if its name movers and threshold
            match this decomposition's.
        run_self_repair: Also run the self-repair experiment (:mod:`.repair`).
        component_settings: Settings for computing ``scores`` when None.
        data_dir: Data directory (CSPA corpus) for computing ``scores``.
        cache: Recorded clean/corrupted runs of ``data`` to reuse (e.g. the component
            analysis' S-inhibition sweeps'); one is made if None and shared by every sweep.
        n_resamples: Bootstrap resamples of each panel's interval over prompts
            (:mod:`.intervals`; default 1,000).
        seed: Seed of the bootstrap (default 0, as the report's intervals).
        level: Coverage of the percentile intervals (default 0.95).

    Returns:
        An :class:`IOIAlgorithm`.

    Raises:
        circuit_atlas.errors.TaskDataError: If ``data`` is not IOI-like (each prompt must hold
            the IO token once and the S token at least twice; metric ``logit_diff``).
        circuit_atlas.errors.AlgorithmError: For scores that do not match the model's heads.
    """
    from circuit_atlas.errors import AlgorithmError

    s = settings or AlgorithmSettings()
    spec = model.spec
    shape = (spec.n_layers, spec.n_heads)
    token_same_position_opposite(data)  # validates the IOI structure before any work
    data = data.to(model.device)
    if scores is None:
        scores = compute_head_scores(model, data, component_settings, data_dir=data_dir)
    if tuple(scores.copy.shape) != shape:
        raise AlgorithmError(f"scores have shape {tuple(scores.copy.shape)}, the model has "
                             f"{shape} heads")  # fmt: skip
    times: dict[str, float] = {}
    cache = cache if cache is not None else RunCache()
    t = time.perf_counter()
    values: dict[str, Tensor] = {}
    direct = direct_effects(model, data, batch_senders=s.batch_senders * 4, baselines=values,
                            cache=cache).double().cpu()  # fmt: skip
    times["direct"] = time.perf_counter() - t
    clean, corrupted = values["clean"].double(), values["corrupted"].double()
    n = len(data)
    std = float(clean.std(unbiased=False)) if n > 1 else 0.0
    gap = Baselines(float(clean.mean()), float(corrupted.mean()), std / math.sqrt(n),
                    abs_tol=s.gap_abs_tol, n_se=s.gap_n_se)  # fmt: skip
    no_roles = {r: torch.zeros(shape, dtype=torch.bool) for r in ROLES}
    base = dict(clean_logit_diff=gap.clean, corrupted_logit_diff=gap.empty,
                clean_logit_diff_std=std, n_examples=n, circuit=_sorted(circuit),
                settings=s, timings=times)  # fmt: skip
    repair = None
    if run_self_repair:
        t = time.perf_counter()
        clean_run = (values["clean_resid"], values["clean_heads"])  # reused from the sweep
        repair = self_repair(model, data, scores.copy, threshold=s.self_repair_threshold,
                             backup_fraction=s.backup_fraction, clean=clean_run)  # fmt: skip
        times["self_repair"] = time.perf_counter() - t
    if not gap.normalized_defined:
        logger.info("IOI algorithm undefined: clean−corrupted logit difference %.4g is within "
                    "noise", gap.clean - gap.empty)  # fmt: skip
        panels = {p: PctEffect.undefined("gap_too_small", denominator=s.denominator)
                  for p in PANELS}  # fmt: skip
        return IOIAlgorithm(_nan(shape), _nan(shape), _nan(shape), no_roles, panels,
                            gap_defined=False, s_inhibition=None, self_repair=repair,
                            intervals=_intervals(panels, {}, clean, corrupted, s, circuit,
                                                 n_resamples, seed, level),
                            **base)  # fmt: skip

    roles = {**no_roles, **direct_roles(direct, scores, s)}
    pct = lambda mask, eff: pct_effect(mask, eff, denominator=s.denominator,  # noqa: E731
                                       circuit=circuit, min_total=s.min_total)
    identified = (roles["name_mover"] | roles["negative_name_mover"] | roles["copy_suppression"]
                  | roles["negative_copy_suppression"])  # fmt: skip
    panels = {"direct": pct(identified, direct)}
    masks = {"direct": identified}
    differences: dict[str, Tensor | None] = {"direct": values["differences"]}
    movers = _heads_of(roles["name_mover"])
    s2i_effect, tertiary_effect, s2i = _nan(shape), _nan(shape), None
    if not movers:
        panels["s_inhibition"] = PctEffect.undefined("no_name_movers", denominator=s.denominator)
        panels["tertiary"] = PctEffect.undefined("no_name_movers", denominator=s.denominator)
    else:
        t = time.perf_counter()
        reusable = (s_inhibition is not None and set(s_inhibition.name_movers) == set(movers)
                    and s_inhibition.threshold == s.s_inhibition_threshold)  # fmt: skip
        s2i = s_inhibition if reusable else s_inhibition_heads(
            model, data, movers, threshold=s.s_inhibition_threshold,
            receiver_positions=s.s_inhibition_positions, batch_senders=s.batch_senders,
            cache=cache)
        times["s_inhibition"] = time.perf_counter() - t
        s2i_effect = s2i.effect.double().cpu()
        roles["s_inhibition"] = s2i.confirmed.cpu().clone()
        panels["s_inhibition"] = pct(roles["s_inhibition"], s2i_effect)
        masks["s_inhibition"] = roles["s_inhibition"]
        differences["s_inhibition"] = s2i.differences
        pure = _heads_of(roles["s_inhibition"] & ~roles["copy_suppression"])
        if not pure:
            panels["tertiary"] = PctEffect.undefined("no_pure_s_inhibition",
                                                     denominator=s.denominator)  # fmt: skip
        else:
            t = time.perf_counter()
            found: dict[str, Tensor] = {}
            tertiary_effect = path_patching_effects(
                model, data, [(layer, head, "v") for layer, head in pure],
                receiver_positions="all", batch_senders=s.batch_senders, baselines=found,
                cache=cache,
            ).double().cpu()  # fmt: skip
            differences["tertiary"] = found["differences"]
            times["tertiary"] = time.perf_counter() - t
            roles["tertiary"] = tertiary_heads(tertiary_effect, scores, s)
            panels["tertiary"] = pct(roles["tertiary"], tertiary_effect)
            masks["tertiary"] = roles["tertiary"]
    t = time.perf_counter()
    intervals = _intervals(panels, {p: (masks[p], differences.get(p)) for p in masks}, clean,
                           corrupted, s, circuit, n_resamples, seed, level)  # fmt: skip
    times["intervals"] = time.perf_counter() - t
    return IOIAlgorithm(direct, s2i_effect, tertiary_effect, roles, panels, gap_defined=True,
                        s_inhibition=s2i, self_repair=repair, intervals=intervals,
                        **base)  # fmt: skip


def _intervals(panels: dict[str, PctEffect], inputs: dict[str, tuple[Tensor, Tensor | None]],
               clean: Tensor, corrupted: Tensor, s: AlgorithmSettings,
               circuit: Collection[Head] | None, n_resamples: int, seed: int,
               level: float) -> dict[str, ShareInterval]:  # fmt: skip
    """Each panel's bootstrap interval (:mod:`.intervals`), or why it has none."""
    out = {}
    for panel, p in panels.items():
        none = lambda reason: ShareInterval.none(reason, n_resamples=n_resamples,  # noqa: E731
                                                 seed=seed, level=level)
        if p.value is None:
            out[panel] = none(p.reason or "total_effect_too_small")
        elif inputs.get(panel, (None, None))[1] is None \
                or inputs[panel][1].shape[-1] != clean.shape[0]:  # (a reused result's prompts)
            out[panel] = none("no_per_prompt_effects")
        else:
            mask, diffs = inputs[panel]
            out[panel] = pct_effect_interval(mask, diffs, clean, corrupted,
                                             denominator=s.denominator, circuit=circuit,
                                             min_total=s.min_total, n_resamples=n_resamples,
                                             seed=seed, level=level)  # fmt: skip
    return out


def _sorted(heads: Collection[Head] | None) -> tuple[Head, ...] | None:
    return None if heads is None else tuple(sorted((int(a), int(b)) for a, b in heads))
