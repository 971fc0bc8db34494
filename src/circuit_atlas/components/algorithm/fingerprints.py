"""Algorithm fingerprints: the share of a task's effect carried by each role, and their similarity.

Beyond the paper (PAPER.md §7.1 claim 3 says the algorithm persists; nothing measured it). For
one checkpoint and task, every node of the model's graph (heads and MLPs; not ``input``) gets a
role, and its **total-effect attribution** is the sum of the EAP-IG scores of its outgoing edges —
the same edge scores the circuit was found with, reused: Σ_v ⟨a_u(corr) − a_u(clean), ∂L/∂in_v⟩
over u's children v equals the integrated-gradients estimate of patching u's whole output, since
u's output reaches the metric only through its children's inputs. The fingerprint is

    share(r) = Σ_{u with role r} |attr(u)| / Σ_u |attr(u)|,

a vector on the probability simplex over the task's roles (:data:`FINGERPRINT_ROLES`):

- ``ioi``: the decomposition's roles (each head under its first role in priority order:
  name mover, CS, negative name mover, negative CS, S-inhibition, tertiary), ``mlp``, and
  ``other`` (heads without a role);
- ``greater-than``: ``successor`` (successor score above the mean over heads, or above
  ``successor_threshold``), ``induction`` (induction score above the mean over heads — the
  paper's rule), ``mlp`` and ``other``; a head that is both counts as a successor head.

Total effects of consecutive roles overlap (a tertiary head's effect flows through S2I heads and
name movers), so the shares are a profile of where the effect is attributed, not an additive
decomposition of the logit difference.

**Similarity** of two fingerprints p, q over the same roles is ``1 − ½ Σ_r |p_r − q_r|``
(one minus the total-variation distance): 1 for equal profiles, 0 for profiles on disjoint
roles, symmetric, and it drops when the effect moves from one role to another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from circuit_atlas.components.algorithm.roles import REASONS, ROLES, HeadScores
from circuit_atlas.errors import AlgorithmError, UnknownNameError

__all__ = [
    "FINGERPRINT_ROLES",
    "Fingerprint",
    "fingerprint",
    "fingerprint_similarity",
    "greater_than_node_roles",
    "ioi_node_roles",
    "node_attributions",
]

FINGERPRINT_ROLES: dict[str, tuple[str, ...]] = {
    "ioi": (*ROLES, "mlp", "other"),
    "greater-than": ("successor", "induction", "mlp", "other"),
}
"""The roles of each task's fingerprint, in order (the stored vector's order)."""


@dataclass(frozen=True)
class Fingerprint:
    """The share of one task's effect carried by each role, at one checkpoint.

    Attributes:
        task: The task.
        roles: The roles, in :data:`FINGERPRINT_ROLES` order.
        shares: Share per role (sums to 1), or None when undefined.
        attribution: Σ |attribution| per role (metric units: logits or probabilities).
        reason: Why it is undefined (``gap_too_small``, ``no_attribution``,
            ``zero_attribution``), else None.
    """

    task: str
    roles: tuple[str, ...]
    shares: tuple[float, ...] | None
    attribution: tuple[float, ...]
    reason: str | None = None

    def as_dict(self) -> dict[str, float] | None:
        """Role → share, or None when undefined."""
        return None if self.shares is None else dict(zip(self.roles, self.shares, strict=True))

    @classmethod
    def undefined(cls, task: str, reason: str) -> Fingerprint:
        """An undefined fingerprint of ``task`` with ``reason``."""
        if reason not in REASONS:
            raise UnknownNameError(f"unknown reason {reason!r}; known: {list(REASONS)}")
        roles = _roles(task)
        return cls(task, roles, None, tuple(math.nan for _ in roles), reason)


def _roles(task: str) -> tuple[str, ...]:
    if task not in FINGERPRINT_ROLES:
        raise UnknownNameError(
            f"no fingerprint roles for task {task!r}; known: {sorted(FINGERPRINT_ROLES)}"
        )
    return FINGERPRINT_ROLES[task]


def node_attributions(parents: Sequence[str], scores: Tensor | Sequence[float]) -> dict[str, float]:
    """Total-effect attribution of each node: the sum of its outgoing edges' scores.

    Args:
        parents: Parent node name of each edge (``CircuitResult.edge_parent``).
        scores: ``(n_edges,)`` signed edge scores (``CircuitResult.scores``).

    Returns:
        Node name → summed score (metric units), for every node that is a parent.

    Raises:
        AlgorithmError: If the two lengths differ.
    """
    values = torch.as_tensor(scores, dtype=torch.float64).flatten().tolist()
    if len(values) != len(parents):
        raise AlgorithmError(f"{len(parents)} edge parents but {len(values)} edge scores")
    out: dict[str, float] = {}
    for parent, value in zip(parents, values, strict=True):
        out[parent] = out.get(parent, 0.0) + value
    return out


def _node_role(name: str, head_role) -> str | None:
    if name == "input" or name == "logits":
        return None
    if name.startswith("m") and name[1:].isdigit():
        return "mlp"
    if name.startswith("a") and ".h" in name:
        layer, head = (int(x) for x in name[1:].split(".h"))
        return head_role(layer, head) or "other"
    return "other"


def ioi_node_roles(primary: Sequence[Sequence[str | None]], nodes: Sequence[str]) -> dict[str, str]:
    """Each node's IOI fingerprint role.

    Args:
        primary: ``[layer][head]`` → first role or None (``IOIAlgorithm.primary_roles()``).
        nodes: Node names of the graph (``input`` and ``logits`` get no role).

    Returns:
        Node → role (``mlp`` for MLPs, ``other`` for heads without a role).
    """
    roles = {}
    for name in nodes:
        role = _node_role(name, lambda layer, head: primary[layer][head])
        if role is not None:
            roles[name] = role
    return roles


def greater_than_node_roles(
    scores: HeadScores, nodes: Sequence[str], *, successor_threshold: float | None = None
) -> dict[str, str]:
    """Each node's Greater-Than fingerprint role (successor, induction, mlp, other).

    Args:
        scores: Component scores with ``successor`` and ``induction``.
        nodes: Node names of the graph.
        successor_threshold: A successor head scores above this; None: above the mean over heads.

    Returns:
        Node → role.

    Raises:
        AlgorithmError: If ``scores.successor`` is None.
    """
    if scores.successor is None:
        raise AlgorithmError("the Greater-Than fingerprint needs successor scores")

    def above(x: Tensor, threshold: float | None) -> Tensor:
        x = x.double()
        defined = x[~torch.isnan(x)]
        cut = threshold if threshold is not None else (
            float(defined.mean()) if defined.numel() else math.inf)  # fmt: skip
        return x > cut

    successor = above(scores.successor, successor_threshold)
    induction = above(scores.induction, None)

    def head_role(layer: int, head: int) -> str | None:
        if successor[layer, head]:
            return "successor"
        return "induction" if induction[layer, head] else None

    return {n: r for n in nodes if (r := _node_role(n, head_role)) is not None}


def fingerprint(task: str, node_roles: Mapping[str, str],
                attributions: Mapping[str, float]) -> Fingerprint:  # fmt: skip
    """The fingerprint of one checkpoint: share of Σ|attribution| per role.

    Args:
        task: ``ioi`` or ``greater-than`` (:data:`FINGERPRINT_ROLES`).
        node_roles: Node → role (:func:`ioi_node_roles`, :func:`greater_than_node_roles`).
        attributions: Node → attribution (:func:`node_attributions`); nodes without a role
            (``input``) are ignored, nodes with a role but no attribution count 0.

    Returns:
        The :class:`Fingerprint`; undefined (``zero_attribution``) when every attribution is 0.

    Raises:
        UnknownNameError: For a task without roles or a role not among the task's.
    """
    roles = _roles(task)
    unknown = sorted(set(node_roles.values()) - set(roles))
    if unknown:
        raise UnknownNameError(f"roles {unknown} are not {task!r} fingerprint roles {list(roles)}")
    totals = dict.fromkeys(roles, 0.0)
    for node, role in node_roles.items():
        value = abs(float(attributions.get(node, 0.0)))
        totals[role] += value if math.isfinite(value) else 0.0
    total = sum(totals.values())
    attribution = tuple(totals[r] for r in roles)
    if total <= 0:
        return Fingerprint(task, roles, None, attribution, "zero_attribution")
    return Fingerprint(task, roles, tuple(totals[r] / total for r in roles), attribution)


def fingerprint_similarity(
    a: Fingerprint | Mapping[str, float] | None, b: Fingerprint | Mapping[str, float] | None
) -> float | None:
    """Similarity ``1 − ½ Σ_r |a_r − b_r|`` of two fingerprints (roles missing from one count 0).

    Args:
        a: A :class:`Fingerprint` or role → share mapping; None (undefined) allowed.
        b: The other.

    Returns:
        A float in [0, 1] (for share vectors that sum to 1), or None when either is undefined.

    Raises:
        AlgorithmError: If a share is negative or NaN.
    """
    pa = a.as_dict() if isinstance(a, Fingerprint) else a
    pb = b.as_dict() if isinstance(b, Fingerprint) else b
    if pa is None or pb is None:
        return None
    distance = 0.0
    for role in set(pa) | set(pb):
        x, y = float(pa.get(role, 0.0)), float(pb.get(role, 0.0))
        if not (x >= 0 and y >= 0):
            raise AlgorithmError(f"fingerprint shares must be >= 0, got {role}: {x!r}, {y!r}")
        distance += abs(x - y)
    return 1.0 - 0.5 * distance
