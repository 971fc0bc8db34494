"""Component scores of attention heads over training, and their link to circuits (PAPER.md §4).

Every head of the model gets each score at each checkpoint, in the same unit (one model load) as
the circuits:

========================  ===========================================================  ========
component                 definition (module)                                          data
========================  ===========================================================  ========
``induction``             attention on offset ``seq_len − 1`` of a repeated random      forward
                          sequence (:mod:`.attention_scores`)
``duplicate_token``       attention on offset ``seq_len`` (same run)                    forward
``previous_token``        attention on offset 1 (same run)                              forward
``successor``             effective OV map through MLP0 over ordinal sequences          weights
                          (Gould et al.; :mod:`.successor`)
``name_mover``            copy score: OV + unembedding top-5 test at the IOI name       1 layer
                          positions (:mod:`.copy_score`)
``negative_name_mover``   the same with the OV map negated                              1 layer
``copy_suppression``      CSPA, McDougall et al. (:mod:`.cspa`)                         forward
``s_inhibition_effect``   path-patching effect through the name movers' queries at END  forward
                          (:mod:`.s_inhibition`)
``s_inhibition``          1 if the head also passes the "token same, position            forward
                          opposite" test, else 0
========================  ===========================================================  ========

:func:`score_heads` computes the scores asked for and returns them as one long table; the study
runner stores it as the ``component_scores`` table. :func:`link_to_circuit` ties the scores to a
task's circuit at the same checkpoint (successor and induction heads to Greater-Than, name movers,
copy suppression and S-inhibition to IOI; :data:`COMPONENT_TASKS`), stored as
``component_heads``. Figures 2 and 3 (:mod:`.plots`) choose which heads to draw from it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from circuit_atlas.errors import ComponentDataError, UnknownNameError

__all__ = [
    "COMPONENTS",
    "COMPONENT_TASKS",
    "Component",
    "ComponentSettings",
    "in_circuit_heads",
    "link_to_circuit",
    "passes",
    "score_heads",
]

logger = logging.getLogger(__name__)

Component = Literal[
    "induction",
    "duplicate_token",
    "previous_token",
    "successor",
    "name_mover",
    "negative_name_mover",
    "copy_suppression",
    "s_inhibition_effect",
    "s_inhibition",
]
"""A component score's name (the ``component`` column of the store)."""

COMPONENTS: tuple[str, ...] = get_args(Component)
"""Every component score, in the order they are computed."""

COMPONENT_TASKS: dict[str, tuple[str, ...]] = {
    "greater-than": ("successor", "induction"),
    "ioi": ("name_mover", "negative_name_mover", "copy_suppression", "s_inhibition"),
}
"""Which component types are tied to which task's circuits (PAPER.md §4, "Linking")."""


@dataclass(frozen=True)
class ComponentSettings:
    """Settings of the component scores (defaults: the paper's, PAPER.md §4).

    Attributes:
        scores: Which components to compute (default: all of :data:`COMPONENTS`).
        seed: Seed of the random sequences (induction) and the corpus sample (CSPA).
        induction_seq_len: Length of the random sequence that is repeated (paper: 100).
        induction_batch: Sequences (paper: 2).
        ioi_n: IOI prompts for the copy score and S-inhibition (paper: 70).
        ioi_seed: Seed of the IOI prompts (paper: 42).
        copy_top_k: A name counts as copied if it is in the top k logits (paper: 5).
        name_mover_threshold: A head is a name mover if its copy score exceeds this fraction
            (paper: 10%); the same for negative name movers.
        copy_suppression_threshold: A head is a copy-suppression head if CSPA exceeds this
            (paper: 0.10).
        cspa_corpus: Directory or file of text for CSPA (default: the registry's corpus,
            :func:`circuit_atlas.data.corpus_paths`).
        cspa_sequences: Corpus windows CSPA is evaluated on (paper: 17).
        cspa_mean_sequences: Windows the mean-ablation value of each head is averaged over
            (paper: 100; the evaluation windows are the first ``cspa_sequences`` of them).
        cspa_seq_len: Tokens per window, the first being BOS (paper: 61).
        cspa_min_layer: Only heads in layers ≥ this get a CSPA score (paper: 2; others NaN). A
            model with no layer ≥ this gets its last layer scored.
        s_inhibition_threshold: Path-patching effect below which a head is an S-inhibition
            candidate (paper: −0.001).
        batch_size: Prompts per forward pass.
    """

    scores: tuple[str, ...] = COMPONENTS
    seed: int = 0
    induction_seq_len: int = 100
    induction_batch: int = 2
    ioi_n: int = 70
    ioi_seed: int = 42
    copy_top_k: int = 5
    name_mover_threshold: float = 0.10
    copy_suppression_threshold: float = 0.10
    cspa_corpus: str | None = None
    cspa_sequences: int = 17
    cspa_mean_sequences: int = 100
    cspa_seq_len: int = 61
    cspa_min_layer: int = 2
    s_inhibition_threshold: float = -0.001
    batch_size: int = 32

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scores) - set(COMPONENTS))
        if unknown:
            raise UnknownNameError(
                f"unknown component score(s) {unknown}; known: {list(COMPONENTS)}"
            )


def _frame_rows(component: str, scores: Any) -> list[dict]:
    """One row per head of a ``(n_layers, n_heads)`` score tensor (NaN kept as None)."""
    values = scores.detach().double().cpu()
    rows = []
    for layer in range(values.shape[0]):
        for head in range(values.shape[1]):
            x = float(values[layer, head])
            rows.append({"component": component, "layer": layer, "head": head,
                         "score": None if math.isnan(x) else x})  # fmt: skip
    return rows


def score_heads(
    model: Any,
    settings: ComponentSettings | None = None,
    *,
    data_dir: str | Path | None = None,
    timings: dict[str, float] | None = None,
    artifacts: dict[str, Any] | None = None,
) -> list[dict]:
    """Every component score of every head of ``model`` (one checkpoint).

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`. Scores that need text
            (successor, name movers, CSPA, S-inhibition) need ``model.tokenizer``.
        settings: Which scores and how (default: all, the paper's settings).
        data_dir: Data directory (resolved as for tasks) for the CSPA corpus.
        timings: When given, receives seconds per score family.
        artifacts: When given, receives what later analyses can reuse: ``"ioi"`` (the IOI
            :class:`~circuit_atlas.tasks.base.TaskDataset` of the copy scores) and
            ``"s_inhibition"`` (the
            :class:`~circuit_atlas.components.s_inhibition.SInhibitionResult`) with ``"runs"``
            (the :class:`~circuit_atlas.components.path_sweep.RunCache` of its sweeps), when
            computed.

    Returns:
        Rows ``{"component", "layer", "head", "score"}``, one per head and computed component;
        ``score`` is None where a score is undefined for a head (e.g. CSPA below
        ``cspa_min_layer``, S-inhibition without name movers).

    Raises:
        UnknownNameError: For an unknown component in ``settings.scores``.
        circuit_atlas.errors.TaskDataError: If the tokenizer cannot build the IOI prompts.
        circuit_atlas.errors.ComponentDataError: If a score needs a tokenizer and the model has
            none, or the successor sequences / CSPA corpus sample cannot be built.
        circuit_atlas.errors.DataNotFoundError: If the CSPA corpus is missing.
    """
    import torch

    s = settings or ComponentSettings()
    wanted = set(s.scores)
    times = timings if timings is not None else {}
    rows: list[dict] = []
    tokenizer = getattr(model, "tokenizer", None)
    needs_text = wanted - {"induction", "duplicate_token", "previous_token"}
    if needs_text and tokenizer is None:
        raise ComponentDataError(
            f"component scores {sorted(needs_text)} need the model's tokenizer; the model has none"
        )

    def clock(name: str, started: float) -> None:
        times[name] = times.get(name, 0.0) + time.perf_counter() - started

    attention = {"induction", "duplicate_token", "previous_token"} & wanted
    if attention:
        from circuit_atlas.components.attention_scores import attention_scores

        t = time.perf_counter()
        found = attention_scores(model, seq_len=s.induction_seq_len, batch=s.induction_batch,
                                 seed=s.seed)  # fmt: skip
        for name in sorted(attention, key=COMPONENTS.index):
            rows += _frame_rows(name, found[name])
        clock("attention", t)
    if "successor" in wanted:
        from circuit_atlas.components.successor import successor_scores

        t = time.perf_counter()
        rows += _frame_rows("successor", successor_scores(model, tokenizer))
        clock("successor", t)
    ioi_needed = {"name_mover", "negative_name_mover", "s_inhibition_effect", "s_inhibition"}
    if ioi_needed & wanted:
        from circuit_atlas.components.copy_score import copy_score_pair
        from circuit_atlas.tasks.ioi import make_ioi

        ioi = make_ioi(tokenizer, n=s.ioi_n, seed=s.ioi_seed)
        if artifacts is not None:
            artifacts["ioi"] = ioi
        t = time.perf_counter()
        copy, negative = copy_score_pair(model, ioi, top_k=s.copy_top_k)
        if "name_mover" in wanted:
            rows += _frame_rows("name_mover", copy)
        if "negative_name_mover" in wanted:
            rows += _frame_rows("negative_name_mover", negative)
        clock("copy", t)
        if {"s_inhibition_effect", "s_inhibition"} & wanted:
            from circuit_atlas.components.s_inhibition import s_inhibition_heads

            t = time.perf_counter()
            movers = [tuple(int(i) for i in ix)
                      for ix in (copy > s.name_mover_threshold).nonzero().tolist()]  # fmt: skip
            from circuit_atlas.components.path_sweep import RunCache

            cache = RunCache()  # the algorithm's sweeps on the same prompts reuse its runs
            result = s_inhibition_heads(model, ioi, movers, threshold=s.s_inhibition_threshold,
                                        cache=cache)  # fmt: skip
            if artifacts is not None:
                artifacts["s_inhibition"] = result
                artifacts["runs"] = cache
            if "s_inhibition_effect" in wanted:
                rows += _frame_rows("s_inhibition_effect", result.effect)
            if "s_inhibition" in wanted:
                confirmed = result.confirmed.double()
                if not movers:
                    confirmed = torch.full_like(confirmed, float("nan"))
                rows += _frame_rows("s_inhibition", confirmed)
            clock("s_inhibition", t)
    if "copy_suppression" in wanted:
        from circuit_atlas.components.cspa import corpus_tokens, cspa_scores
        from circuit_atlas.data import corpus_paths

        t = time.perf_counter()
        corpus = Path(s.cspa_corpus) if s.cspa_corpus else corpus_paths(data_dir)
        n = max(s.cspa_sequences, s.cspa_mean_sequences)
        tokens = corpus_tokens(corpus, tokenizer, n_sequences=n, seq_len=s.cspa_seq_len,
                               seed=s.seed)  # fmt: skip
        first = min(s.cspa_min_layer, model.spec.n_layers - 1)  # a model this shallow: last layer
        found = cspa_scores(model, tokens[: s.cspa_sequences],
                            mean_tokens=tokens[: s.cspa_mean_sequences],
                            layers=list(range(first, model.spec.n_layers)))  # fmt: skip
        rows += _frame_rows("copy_suppression", found)
        clock("copy_suppression", t)
    return rows


def in_circuit_heads(parents: Iterable[str], children: Iterable[str]) -> set[tuple[int, int]]:
    """Heads with both an in-circuit incoming and outgoing edge (PAPER.md §4, "Linking").

    Args:
        parents: Parent node names of the in-circuit edges (``a3.h5``, ``m2``, ``input``).
        children: Child node names of the same edges, aligned with ``parents`` (a ``<q>``
            suffix is ignored).

    Returns:
        ``(layer, head)`` of every head that is both a parent and a child of in-circuit edges.
    """
    def heads(names: Iterable[str]) -> set[tuple[int, int]]:
        out = set()
        for name in names:
            name = name.split("<", 1)[0]
            if name.startswith("a") and ".h" in name:
                layer, head = name[1:].split(".h")
                out.add((int(layer), int(head)))
        return out

    return heads(parents) & heads(children)


def passes(component: str, scores: Mapping[tuple[int, int], float | None],
           settings: ComponentSettings | None = None) -> dict[tuple[int, int], bool | None]:
    """The paper's per-checkpoint rule for calling a head a component of this type.

    Rules (PAPER.md §4–5): induction and duplicate-token heads score above the mean over all
    heads; name movers (and negative name movers) have a copy score above
    ``name_mover_threshold``; copy-suppression heads have CSPA above
    ``copy_suppression_threshold``; S-inhibition heads passed the path-patching test. The paper
    defines no per-checkpoint rule for successor and previous-token heads (Figures 2–3 use a
    fraction of the maximum over training instead): their value is None.

    Args:
        component: The component type.
        scores: ``(layer, head)`` → score at one checkpoint (None where undefined).
        settings: Thresholds (default: the paper's).

    Returns:
        ``(layer, head)`` → True/False, or None where there is no rule or no score.
    """
    s = settings or ComponentSettings()
    defined = {k: v for k, v in scores.items() if v is not None and not math.isnan(v)}
    if component in ("induction", "duplicate_token") and defined:
        mean = sum(defined.values()) / len(defined)
        rule = lambda x: x > mean  # noqa: E731
    elif component in ("name_mover", "negative_name_mover"):
        rule = lambda x: x > s.name_mover_threshold  # noqa: E731
    elif component == "copy_suppression":
        rule = lambda x: x > s.copy_suppression_threshold  # noqa: E731
    elif component == "s_inhibition":
        rule = lambda x: x > 0.5  # noqa: E731
    else:
        return {k: None for k in scores}
    return {k: (rule(defined[k]) if k in defined else None) for k in scores}


def link_to_circuit(
    rows: list[dict],
    task: str,
    parents: Iterable[str] | None,
    children: Iterable[str] | None,
    settings: ComponentSettings | None = None,
) -> list[dict]:
    """Tie one checkpoint's component scores to a task's circuit at the same checkpoint.

    Args:
        rows: :func:`score_heads` output.
        task: The task whose circuit is given; only the component types of
            :data:`COMPONENT_TASKS` for it are linked (none for other tasks).
        parents: Parent node names of the circuit's in-circuit edges; None when the task has no
            faithful minimal circuit at this checkpoint (faithfulness undefined — the stored
            circuit is the search's fallback — or never reaching the threshold).
        children: Child node names of the same edges (None with ``parents``).
        settings: Thresholds for :func:`passes`.

    Returns:
        Rows ``{"task", "component", "layer", "head", "node", "score", "is_component",
        "in_circuit"}``, one per head and linked component type; ``in_circuit`` is None when
        there is no faithful circuit.
    """
    linked = COMPONENT_TASKS.get(task, ())
    inside = None if parents is None else in_circuit_heads(parents, children or ())
    out = []
    for component in linked:
        scores = {(r["layer"], r["head"]): r["score"] for r in rows if r["component"] == component}
        if not scores:
            continue
        verdict = passes(component, scores, settings)
        for (layer, head), score in sorted(scores.items()):
            out.append({"task": task, "component": component, "layer": layer, "head": head,
                        "node": f"a{layer}.h{head}", "score": score,
                        "is_component": verdict[(layer, head)],
                        "in_circuit": None if inside is None else (layer, head) in inside})
    return out
