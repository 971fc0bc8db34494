"""The roles of heads in the IOI algorithm and the % effect they carry (PAPER.md §5, Figure 4 B–D).

Pure functions on ``(L, h)`` tensors: which heads play which role, given their path-patching
effects and component scores, and what percentage of an effect a set of heads carries. The
tensor work (path patching, the S-inhibition test) is in
:mod:`circuit_atlas.components.algorithm.decompose`.

Source followed: curt-tigges/circuits-over-time ``get_ioi_consistency.py`` (the rules below;
PAPER.md §5). Effects are the noising metric (patched − clean) / (clean − corrupted) of the mean
logit difference: 0 no effect, −1 the corrupted prompt's performance.

- **name mover** (NMH): copy score > ``name_mover_threshold`` (10 %) and direct effect < 0;
- **negative name mover**: negated copy score > 10 % and direct effect ≠ 0;
- **copy suppression** (CS): CSPA > ``copy_suppression_threshold`` (0.10) and direct effect <
  ``cspa_gate`` (−0.01; the reference computes CSPA only for heads with effect < −0.01, so a CS
  head needs both effect < 0 and effect < −0.01);
- **negative copy suppression**: CSPA > 0.10 and direct effect > 0 (whole-model CSPA, as the
  reference's cached path reads it; with CSPA computed only below −0.01 no head could qualify);
- **S-inhibition** (S2I): effect through the name movers' queries < −0.001 and the "token same,
  position opposite" test passed (:mod:`circuit_atlas.components.s_inhibition`);
- **tertiary**: effect through the values of the *pure* S2I heads (S2I heads that are not CS
  heads) < −0.001 and induction or duplicate-token score above the mean over all heads.

:func:`pct_effect` is our definition of the reference's missing ``get_pct_effect`` (see its
docstring and ``docs/algorithm.md``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch
from torch import Tensor

from circuit_atlas.components.path_sweep import Head, ReceiverPositions
from circuit_atlas.errors import AlgorithmError, UnknownNameError

__all__ = [
    "DENOMINATORS",
    "PANELS",
    "REASONS",
    "ROLES",
    "AlgorithmSettings",
    "Denominator",
    "HeadScores",
    "Panel",
    "PctEffect",
    "Reason",
    "Role",
    "direct_roles",
    "pct_effect",
    "primary_roles",
    "tertiary_heads",
]

Role = Literal[
    "name_mover",
    "copy_suppression",
    "negative_name_mover",
    "negative_copy_suppression",
    "s_inhibition",
    "tertiary",
]
"""A head's role in the IOI algorithm, in priority order (a head with several roles is drawn and
counted in the fingerprint under the first)."""

ROLES: tuple[str, ...] = get_args(Role)
"""Every IOI role, in priority order."""

Panel = Literal["direct", "s_inhibition", "tertiary"]
"""Figure 4 B (direct-effect heads), C (S-inhibition heads), D (tertiary heads)."""

PANELS: tuple[str, ...] = get_args(Panel)

Denominator = Literal["circuit", "all"]
"""Which heads' summed effect is 100 %: the heads of the IOI circuit, or every head."""

DENOMINATORS: tuple[str, ...] = get_args(Denominator)

Reason = Literal[
    "gap_too_small",
    "no_faithful_circuit",
    "no_name_movers",
    "no_pure_s_inhibition",
    "total_effect_too_small",
    "no_attribution",
    "zero_attribution",
]
"""Why a result is undefined: the clean–corrupted gap is within noise (normalised effects and
attributions mean nothing); the denominator is the circuit and there is no faithful minimal
circuit; no name mover (no receiver for panels C and D; nothing to ablate for self-repair); no
pure S-inhibition head (no receiver for D); the summed effect of the denominator heads is
(nearly) 0; a fingerprint without edge attributions (no circuit computed for the task) or whose
attributions are all 0."""

REASONS: tuple[str, ...] = get_args(Reason)


@dataclass(frozen=True)
class AlgorithmSettings:
    """Settings of the IOI algorithm decomposition, fingerprint and self-repair.

    Defaults are the paper's (PAPER.md §5) where it has one.

    Attributes:
        name_mover_threshold: Copy score (fraction) above which a head copies names (10 %).
        copy_suppression_threshold: CSPA above which a head copy-suppresses (0.10).
        cspa_gate: A CS head also needs a direct effect below this (the reference computes CSPA
            only for heads with effect < −0.01); None: no gate.
        s_inhibition_threshold: Effect through the name movers' queries below which a head is an
            S-inhibition candidate (−0.001).
        s_inhibition_positions: Where the name movers' queries are patched for the candidate
            effect: ``"end"`` (PAPER.md §4) or ``"all"`` (the reference script).
        tertiary_threshold: Effect through the pure S2I heads' values below which a head is a
            tertiary candidate (−0.001).
        denominator: ``circuit`` (Σ effect of the EAP-IG circuit's heads, our reading of the
            reference) or ``all`` (Σ effect of every head).
        min_total: The summed denominator effect must be at least this large in magnitude
            (units of the clean–corrupted gap) for a % effect to be defined.
        gap_abs_tol: The clean–corrupted logit-difference gap must exceed this (logits) ...
        gap_n_se: ... and this many standard errors of the clean mean logit difference
            (:class:`~circuit_atlas.faithfulness.Baselines`' convention).
        self_repair_threshold: Name movers with copy score ≥ this are ablated (75 %).
        backup_fraction: A head is a backup name mover if its direct logit attribution rises by
            at least this fraction of the ablated heads' clean attribution (0.10).
        successor_threshold: Greater-Than fingerprint: a successor head scores above this; None:
            above the mean over heads (the paper's rule for induction heads).
        batch_senders: Senders per batched path-patching run.
    """

    name_mover_threshold: float = 0.10
    copy_suppression_threshold: float = 0.10
    cspa_gate: float | None = -0.01
    s_inhibition_threshold: float = -0.001
    s_inhibition_positions: ReceiverPositions = "end"
    tertiary_threshold: float = -0.001
    denominator: Denominator = "circuit"
    min_total: float = 1e-3
    gap_abs_tol: float = 1e-3
    gap_n_se: float = 2.0
    self_repair_threshold: float = 0.75
    backup_fraction: float = 0.10
    successor_threshold: float | None = None
    batch_senders: int = 16

    def __post_init__(self) -> None:
        if self.denominator not in DENOMINATORS:
            raise UnknownNameError(
                f"unknown denominator {self.denominator!r}; choose one of {list(DENOMINATORS)}"
            )
        if self.s_inhibition_positions not in ("end", "all"):
            raise UnknownNameError(f"s_inhibition_positions must be 'end' or 'all', got "
                                   f"{self.s_inhibition_positions!r}")  # fmt: skip
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise AlgorithmError(f"{f.name} must be finite, got {value!r}")
        if self.min_total <= 0 or self.gap_abs_tol < 0 or self.gap_n_se < 0:
            raise AlgorithmError(
                f"min_total must be > 0 and gap_abs_tol, gap_n_se >= 0; got {self.min_total!r}, "
                f"{self.gap_abs_tol!r}, {self.gap_n_se!r}"
            )
        if not 0 <= self.backup_fraction:
            raise AlgorithmError(f"backup_fraction must be >= 0, got {self.backup_fraction!r}")
        if self.batch_senders < 1:
            raise AlgorithmError(f"batch_senders must be >= 1, got {self.batch_senders!r}")


_SCORE_NAMES = {"copy": "name_mover", "negative_copy": "negative_name_mover",
                "cspa": "copy_suppression", "induction": "induction",
                "duplicate_token": "duplicate_token", "successor": "successor"}  # fmt: skip


@dataclass(frozen=True)
class HeadScores:
    """The component scores the decomposition reads, one ``(L, h)`` float tensor each.

    NaN marks an undefined score (e.g. CSPA below ``cspa_min_layer``); a NaN never passes a rule.

    Attributes:
        copy: Copy score, a fraction in [0, 1] (:mod:`~circuit_atlas.components.copy_score`).
        negative_copy: Copy score of the negated OV map.
        cspa: CSPA copy-suppression score (:mod:`~circuit_atlas.components.cspa`).
        induction: Induction score (:mod:`~circuit_atlas.components.attention_scores`).
        duplicate_token: Duplicate-token score.
        successor: Successor score (Greater-Than fingerprint only), or None.
    """

    copy: Tensor
    negative_copy: Tensor
    cspa: Tensor
    induction: Tensor
    duplicate_token: Tensor
    successor: Tensor | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.copy.shape)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and tuple(value.shape) != shape:
                raise AlgorithmError(
                    f"HeadScores.{f.name} has shape {tuple(value.shape)}, copy has {shape}"
                )

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], n_layers: int, n_heads: int) -> HeadScores:
        """Build from component-score rows (``score_heads`` output or ``component_scores``).

        Args:
            rows: Mappings with ``component``, ``layer``, ``head`` and ``score`` (None = NaN).
            n_layers: Layers of the model.
            n_heads: Heads per layer.

        Returns:
            The scores; a component without rows is all NaN (``successor``: None).
        """
        found: dict[str, Tensor] = {}
        for row in rows:
            name = row["component"]
            if name not in _SCORE_NAMES.values():
                continue
            table = found.setdefault(name, torch.full((n_layers, n_heads), float("nan"),
                                                      dtype=torch.float64))  # fmt: skip
            score = row["score"]
            table[int(row["layer"]), int(row["head"])] = math.nan if score is None else score
        nan = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
        values = {k: found.get(v, nan.clone()) for k, v in _SCORE_NAMES.items()}
        values["successor"] = found.get("successor")
        return cls(**values)


def _mean(x: Tensor) -> float:
    defined = x[~torch.isnan(x)]
    return float(defined.mean()) if defined.numel() else math.nan


def direct_roles(direct: Tensor, scores: HeadScores,
                 settings: AlgorithmSettings | None = None) -> dict[str, Tensor]:  # fmt: skip
    """Figure 4 B: name movers, negative name movers, CS and negative CS heads.

    Args:
        direct: ``(L, h)`` direct effects (noising, into the final residual stream at END).
        scores: Component scores of the same heads.
        settings: Thresholds (default: the paper's).

    Returns:
        ``{"name_mover", "negative_name_mover", "copy_suppression",
        "negative_copy_suppression"}`` → ``(L, h)`` bool masks (rules: module docstring).
    """
    s = settings or AlgorithmSettings()
    eff = direct.double().cpu()
    cs_effect = eff < 0 if s.cspa_gate is None else (eff < 0) & (eff < s.cspa_gate)
    cspa = scores.cspa.double() > s.copy_suppression_threshold
    return {
        "name_mover": (scores.copy.double() > s.name_mover_threshold) & (eff < 0),
        "negative_name_mover": (scores.negative_copy.double() > s.name_mover_threshold)
        & (eff != 0),
        "copy_suppression": cspa & cs_effect,
        "negative_copy_suppression": cspa & (eff > 0),
    }


def tertiary_heads(effect: Tensor, scores: HeadScores,
                   settings: AlgorithmSettings | None = None) -> Tensor:  # fmt: skip
    """Figure 4 D: heads below the threshold whose induction or duplicate score beats the mean.

    Args:
        effect: ``(L, h)`` effects through the pure S2I heads' values.
        scores: Component scores (induction and duplicate-token; means over defined heads).
        settings: Thresholds.

    Returns:
        ``(L, h)`` bool mask.
    """
    s = settings or AlgorithmSettings()
    induction, duplicate = scores.induction.double(), scores.duplicate_token.double()
    above = (induction > _mean(induction)) | (duplicate > _mean(duplicate))
    return (effect.double().cpu() < s.tertiary_threshold) & above


def primary_roles(masks: Mapping[str, Tensor]) -> list[list[str | None]]:
    """Each head's first role in :data:`ROLES` order (None for a head with no role).

    Args:
        masks: Role → ``(L, h)`` bool mask (roles may be missing).

    Returns:
        ``out[layer][head]`` → role name or None.
    """
    some = next(iter(masks.values()))
    n_layers, n_heads = some.shape
    out: list[list[str | None]] = [[None] * n_heads for _ in range(n_layers)]
    for role in reversed(ROLES):
        if role not in masks:
            continue
        for layer, head in masks[role].nonzero().tolist():
            out[layer][head] = role
    return out


@dataclass(frozen=True)
class PctEffect:
    """The % of an effect carried by a set of heads (one Figure 4 panel, one checkpoint).

    Attributes:
        value: 100 × ``identified`` / ``total``, or None when undefined.
        reason: Why it is undefined (:data:`Reason`), else None.
        identified: Σ effect of the identified heads that are among the denominator heads.
        total: Σ effect of the denominator heads (NaN when undefined for lack of them).
        heads: The identified heads ``(layer, head)``, sorted.
        n_denominator: How many heads the denominator sums over (0 when it has none).
        denominator: ``circuit`` or ``all``.
    """

    value: float | None
    reason: str | None
    identified: float
    total: float
    heads: tuple[Head, ...]
    n_denominator: int
    denominator: str

    @classmethod
    def undefined(cls, reason: str, heads: Iterable[Head] = (),
                  denominator: str = "circuit") -> PctEffect:  # fmt: skip
        """An undefined result with ``reason``."""
        if reason not in REASONS:
            raise UnknownNameError(f"unknown reason {reason!r}; known: {list(REASONS)}")
        return cls(None, reason, math.nan, math.nan, tuple(sorted(heads)), 0, denominator)


def _head_set(heads: Collection[Head] | Tensor, shape: tuple[int, int], what: str) -> set[Head]:
    if isinstance(heads, Tensor):
        if heads.dtype != torch.bool or tuple(heads.shape) != shape:
            raise AlgorithmError(f"{what} mask must be a bool tensor of shape {shape}, got "
                                 f"{heads.dtype} {tuple(heads.shape)}")  # fmt: skip
        return {(int(a), int(b)) for a, b in heads.nonzero().tolist()}
    out = set()
    for item in heads:
        layer, head = (int(i) for i in item)
        if not (0 <= layer < shape[0] and 0 <= head < shape[1]):
            raise AlgorithmError(f"{what} head {(layer, head)} is outside the {shape[0]} × "
                                 f"{shape[1]} effect grid")  # fmt: skip
        out.add((layer, head))
    return out


def pct_effect(
    identified: Collection[Head] | Tensor,
    effects: Tensor,
    *,
    denominator: Denominator = "circuit",
    circuit: Collection[Head] | None = None,
    min_total: float = 1e-3,
) -> PctEffect:
    """The % of the summed effect that the identified heads carry (our ``get_pct_effect``).

    The reference calls ``get_pct_effect(identified_heads, effects, nodes)`` with the nodes of
    the checkpoint's EAP-IG circuit, but the helper is in no public version of its code. We
    define it as

        100 × Σ_{h ∈ I ∩ D} effect(h) / Σ_{h ∈ D} effect(h),

    with I the identified heads and D the denominator heads: the heads of the IOI circuit
    (``denominator="circuit"``, PAPER.md §5's reading) or every head (``"all"``). Sums are signed:
    effects of the wrong sign (e.g. a negative copy-suppression head's positive direct effect)
    lower the %, and the % can leave [0, 100] when D's effects have mixed signs. Identified heads
    outside D are not counted, so I = ∅ gives 0 and I ⊇ D gives 100.

    Args:
        identified: Heads ``(layer, head)`` or an ``(L, h)`` bool mask.
        effects: ``(L, h)`` effects (noising; NaN counts as 0 — a head that was not patched).
        denominator: ``circuit`` or ``all``.
        circuit: The IOI circuit's heads (required for ``circuit``; None = no faithful circuit).
        min_total: Smallest |Σ_D effect| for which the % is defined.

    Returns:
        A :class:`PctEffect`; undefined (``value`` None) with reason ``no_faithful_circuit``
        (``circuit`` denominator without a circuit) or ``total_effect_too_small``.

    Raises:
        UnknownNameError: For an unknown ``denominator``.
        AlgorithmError: For a head outside the grid or a malformed mask.
    """
    if denominator not in DENOMINATORS:
        raise UnknownNameError(
            f"unknown denominator {denominator!r}; choose one of {list(DENOMINATORS)}"
        )
    shape = (int(effects.shape[0]), int(effects.shape[1]))
    chosen = _head_set(identified, shape, "identified")
    if denominator == "circuit" and circuit is None:
        return PctEffect.undefined("no_faithful_circuit", chosen, denominator)
    pool = (
        _head_set(circuit, shape, "circuit")
        if denominator == "circuit"
        else {(a, b) for a in range(shape[0]) for b in range(shape[1])}
    )
    eff = torch.nan_to_num(effects.double().cpu(), nan=0.0)
    total = float(sum(eff[h] for h in pool)) if pool else 0.0
    part = float(sum(eff[h] for h in chosen & pool)) if chosen & pool else 0.0
    heads = tuple(sorted(chosen))
    if not math.isfinite(total) or abs(total) < min_total:
        return PctEffect(None, "total_effect_too_small", part, total, heads, len(pool),
                         denominator)  # fmt: skip
    value = 100.0 * part / total + 0.0  # (no -0.0)
    return PctEffect(value, None, part, total, heads, len(pool), denominator)
