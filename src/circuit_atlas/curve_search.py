"""Searches for the minimal faithful circuit size on a faithfulness curve (PAPER.md §3.4).

A *curve* maps a circuit size n (edges requested from the selection, before pruning) to the
circuit's faithfulness; searches query it through an ``evaluate(sizes) -> values`` callable
that evaluates many sizes in one batched call.

* :func:`paper_search` reproduces ``get_faithfulness_metrics_adaptive`` and
  ``get_faithfulness_metrics_binary_search_with_local_search`` of curt-tigges/circuits-over-time
  (``get_circuits_over_time.py`` at commit 007e53d) exactly, one evaluation at a time.
* :func:`fast_search` runs the same control flow against a memo that it fills speculatively in
  a few batched calls, so it returns *the paper's size on the same curve* (not the global
  minimum, which on a non-monotone curve may differ) in a handful of rounds.
* :func:`exhaustive_search` evaluates every size 1…end and returns the smallest n with
  f(n) ≥ threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from circuit_atlas.errors import UnknownNameError

__all__ = [
    "SEARCHES",
    "AdaptiveConfig",
    "Evaluate",
    "SearchKind",
    "SearchResult",
    "exhaustive_search",
    "fast_search",
    "paper_search",
    "run_search",
]

SearchKind = Literal["fast", "paper", "exhaustive"]
"""Which search finds the minimal faithful circuit."""

SEARCHES: tuple[str, ...] = ("fast", "paper", "exhaustive")

Evaluate = Callable[[Sequence[int]], Sequence[float]]
"""Batched curve oracle: faithfulness of the circuits of the given sizes, in order."""


@dataclass(frozen=True)
class AdaptiveConfig:
    """Parameters of the paper's adaptive search (defaults as in the paper's runs).

    Attributes:
        threshold: Faithfulness a circuit must exceed (0.8).
        start: First size scanned (25).
        end: Scan while size < end (1600); also the fallback size when nothing passes.
        initial_step: Scan step (25); the logging scan after the crossing uses twice this.
        step_reduction_factor: Step multiplier near the threshold (0.5).
        min_step: Smallest step (1).
        local_search_radius: ± sizes checked around a binary-search midpoint (5).
        near_fraction: Steps shrink once faithfulness > near_fraction · threshold (0.75).
        local_tolerance: Local search when |f − threshold| ≤ local_tolerance · threshold (0.1).
    """

    threshold: float = 0.8
    start: int = 25
    end: int = 1600
    initial_step: int = 25
    step_reduction_factor: float = 0.5
    min_step: int = 1
    local_search_radius: int = 5
    near_fraction: float = 0.75
    local_tolerance: float = 0.1

    def __post_init__(self) -> None:
        if self.start < 1 or self.end <= self.start:
            raise ValueError(f"need 1 <= start < end, got start={self.start}, end={self.end}")
        if self.initial_step < 1 or self.min_step < 1:
            raise ValueError(
                f"steps must be >= 1, got initial_step={self.initial_step}, "
                f"min_step={self.min_step}"
            )


@dataclass
class SearchResult:
    """Outcome of a search.

    Attributes:
        size: The minimal faithful size n (edges requested from the selection, before pruning);
            ``end`` when no size passed.
        passed: Whether some size passed the threshold (False means the fallback was used).
        values: Faithfulness of every size evaluated.
        rounds: Calls to the batched oracle (sequential model passes over the data).
        sizes_evaluated: Sizes sent to the oracle in total (circuits run, before any
            deduplication of identical circuits by the oracle).
        reference_evaluations: For the paper's procedure, how many ``evaluate_graph`` calls the
            original code makes for this curve (its scan, binary/local search, logging scan and
            the final re-evaluation, duplicates included); None for the exhaustive search.
        trace: Sizes in the order the paper's procedure asked for them (empty for exhaustive).
    """

    size: int
    passed: bool
    values: dict[int, float] = field(default_factory=dict)
    rounds: int = 0
    sizes_evaluated: int = 0
    reference_evaluations: int | None = None
    trace: list[int] = field(default_factory=list)


# ------------------------------------------------------------------------ the paper's procedure
@dataclass
class _Request:
    size: int
    phase: Literal["scan", "binary", "log"]
    window: tuple[int, int]  # sizes worth prefetching with this one (inclusive)


@dataclass
class _State:
    decided: bool = False
    size: int | None = None
    passed: bool = False


def _adaptive(cfg: AdaptiveConfig, state: _State) -> Generator[_Request, float, None]:
    """``get_faithfulness_metrics_adaptive`` as a coroutine: yields sizes, receives scores.

    Control flow (circuits-over-time ``get_circuits_over_time.py``, 007e53d): scan from
    ``start`` while size < ``end``; at the first score > threshold run the binary search on
    [max(size − step, 1), size] and switch to step 2·initial_step (a logging scan to ``end``).
    Before that, a reduced step is reset to initial_step when the score is below
    near_fraction·threshold or below the previous size's score, and the step is multiplied by
    step_reduction_factor (floor, at least min_step) while the score > near_fraction·threshold.
    """
    thr = cfg.threshold
    near = thr * cfg.near_fraction
    seen: dict[int, float] = {}
    step, size, exceeds = cfg.initial_step, cfg.start, False
    while size < cfg.end:
        phase = "log" if exceeds else "scan"
        score = yield _Request(size, phase, (size, min(size + cfg.initial_step, cfg.end - 1)))
        seen[size] = score
        if score > thr and not exceeds:
            exceeds = True
            binary, found = yield from _binary(cfg, max(size - step, 1), size)
            state.decided, state.size, state.passed = True, found, True
            step = cfg.initial_step * 2
            seen.update(binary)
        if step < cfg.initial_step and not exceeds and (score < near or score < seen[size - step]):
            step = max(cfg.initial_step, int(step / cfg.step_reduction_factor))
        if not exceeds and score > near:
            step = max(cfg.min_step, int(step * cfg.step_reduction_factor))
        size += step
    if not state.decided:
        state.decided, state.size, state.passed = True, cfg.end, False


def _binary(
    cfg: AdaptiveConfig, start: int, end: int
) -> Generator[_Request, float, tuple[dict[int, float], int]]:
    """``get_faithfulness_metrics_binary_search_with_local_search`` (its own memo, ≥ test)."""
    thr = cfg.threshold
    seen: dict[int, float] = {}

    def value(size: int) -> Generator[_Request, float, float]:
        if size not in seen:
            seen[size] = yield _Request(size, "binary", (start, end))
        return seen[size]

    low, high, found = start, end, None
    while low <= high:
        mid = (low + high) // 2
        mid_score = yield from value(mid)
        if mid_score >= thr:
            found, high = mid, mid - 1
        else:
            low = mid + 1
        if abs(mid_score - thr) <= thr * cfg.local_tolerance:
            for offset in range(-cfg.local_search_radius, cfg.local_search_radius + 1):
                local = mid + offset
                if offset == 0 or not start <= local <= end:
                    continue
                local_score = yield from value(local)
                if local_score >= thr and (found is None or local < found):
                    found, high = local, local - 1
                    break
    return seen, (end if found is None else found)


class _Memo:
    """Faithfulness values by size, filled through the batched oracle; counts rounds."""

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate = evaluate
        self.values: dict[int, float] = {}
        self.rounds = 0
        self.sizes = 0

    def fetch(self, sizes: Iterable[int]) -> None:
        new = sorted({int(s) for s in sizes} - self.values.keys())
        if not new:
            return
        values = list(self.evaluate(new))
        if len(values) != len(new):
            raise ValueError(f"evaluate returned {len(values)} values for {len(new)} sizes")
        self.values.update(zip(new, (float(v) for v in values), strict=True))
        self.rounds += 1
        self.sizes += len(new)


def _drive(
    cfg: AdaptiveConfig,
    memo: _Memo,
    prefetch: Callable[[_Request], Iterable[int]],
    stop_early: bool,
) -> SearchResult:
    state = _State()
    gen = _adaptive(cfg, state)
    trace: list[int] = []
    request = next(gen, None)
    while request is not None:
        if stop_early and state.decided:
            break
        trace.append(request.size)
        if request.size not in memo.values:
            memo.fetch([request.size, *prefetch(request)])
        try:
            request = gen.send(memo.values[request.size])
        except StopIteration:
            request = None
    assert state.size is not None  # the coroutine always decides before it ends
    return SearchResult(
        size=state.size,
        passed=state.passed,
        values=dict(memo.values),
        rounds=memo.rounds,
        sizes_evaluated=memo.sizes,
        reference_evaluations=None if stop_early else len(trace) + 1,
        trace=trace,
    )


def paper_search(evaluate: Evaluate, config: AdaptiveConfig | None = None) -> SearchResult:
    """The paper's adaptive search, one evaluation per round, run to the end of its scan.

    Reproduces ``get_faithfulness_metrics_adaptive`` (threshold 0.8, start 25, end 1600,
    initial step 25) with its binary search and ±5 local search, from curt-tigges/
    circuits-over-time ``get_circuits_over_time.py`` (commit 007e53d); see :func:`_adaptive`.
    Differences, all documented: sizes already evaluated are not evaluated again (the original
    re-evaluates inside its binary search and once more for the final circuit; these are counted
    in ``reference_evaluations``); when nothing passes the size is ``end`` (the original then
    fails with a ``KeyError`` when it logs ``faithfulness[end]``, a size its scan never reaches).

    Args:
        evaluate: Batched curve oracle (here called with one size at a time).
        config: Search parameters (the paper's by default).

    Returns:
        The :class:`SearchResult`; ``values`` holds the whole logged curve.
    """
    cfg = config or AdaptiveConfig()
    return _drive(cfg, _Memo(evaluate), lambda request: (), stop_early=False)


def fast_search(
    evaluate: Evaluate,
    config: AdaptiveConfig | None = None,
    *,
    prefetch: Iterable[int] = (),
    window: int | None = None,
    growth: float = 2.0,
) -> SearchResult:
    """The paper's answer on the same curve, in a few batched rounds.

    The paper's control flow (:func:`_adaptive`) runs unchanged against a memo; only *which*
    sizes are evaluated together differs, so for any curve f the returned size equals
    :func:`paper_search`'s (same decisions on the same values). Rounds:

    1. the coarse grid ``start, start + step, … < end`` (the scan's path while the step is
       not reduced) plus ``prefetch`` (e.g. the logging curve's sizes), in one call;
    2. on a miss during the reduced-step scan, every size in [size, size + w], with
       w = ``window`` (any path of reduced steps passes only through these), w growing by
       ``growth`` at each further miss (a curve hovering just under the threshold keeps the
       paper at steps of 1–12 for long stretches; growth bounds the rounds by a logarithm);
    3. on a miss during the binary search, its whole bracket [size − step, size].

    The search stops as soon as the binary search has decided (the rest of the paper's scan
    only logs). Rounds and circuits trade off: on the curves of docs/circuits.md the default
    needs 4–5 rounds and 2.5–4× the paper's distinct evaluations; ``window=0`` evaluates only
    what the paper asks for until it decides (no grid, no speculation: a subset of the paper's
    evaluations, one per round).

    Args:
        evaluate: Batched curve oracle.
        config: Search parameters (the paper's by default).
        prefetch: Extra sizes evaluated in the first round.
        window: Width of the first speculative scan window (default ``initial_step``; 0
            disables all speculation, the grid of round 1 included).
        growth: Factor by which the window grows after each further miss (≥ 1).

    Returns:
        The :class:`SearchResult` (``reference_evaluations`` is None: the logging scan is not
        run; use :func:`paper_search` to count the original's evaluations).

    Raises:
        ValueError: If ``window`` < 0 or ``growth`` < 1.
    """
    cfg = config or AdaptiveConfig()
    width = cfg.initial_step if window is None else window
    if width < 0 or growth < 1:
        raise ValueError(f"need window >= 0 and growth >= 1, got window={window}, growth={growth}")
    memo = _Memo(evaluate)
    grid = range(cfg.start, cfg.end, cfg.initial_step) if width else ()
    memo.fetch([*grid, *prefetch])
    scan_misses = 0

    def speculate(request: _Request) -> range:
        nonlocal scan_misses
        lo, hi = request.window
        if not width:
            return range(0)
        if request.phase == "scan":
            hi = min(lo + int(width * growth**scan_misses), cfg.end - 1)
            scan_misses += 1
        return range(max(lo, 1), hi + 1)

    return _drive(cfg, memo, speculate, stop_early=True)


def exhaustive_search(
    evaluate: Evaluate,
    config: AdaptiveConfig | None = None,
    *,
    max_size: int | None = None,
    chunk: int | None = None,
    prefetch: Iterable[int] = (),
) -> SearchResult:
    """The smallest n in 1…end with f(n) ≥ threshold on the full curve.

    Args:
        evaluate: Batched curve oracle.
        config: ``threshold`` and ``end`` are used (fallback ``end`` when nothing passes).
        max_size: Sizes above this (e.g. the number of edges: every larger size is the same
            circuit) are not evaluated.
        chunk: Sizes per oracle call (None = all in one call).
        prefetch: Extra sizes evaluated in the first round.

    Returns:
        The :class:`SearchResult`.
    """
    cfg = config or AdaptiveConfig()
    top = cfg.end if max_size is None else min(cfg.end, max_size)
    sizes = list(range(1, top + 1))
    memo = _Memo(evaluate)
    step = max(1, chunk or len(sizes))
    extra = list(prefetch)
    for i in range(0, max(len(sizes), 1), step):
        memo.fetch(sizes[i : i + step] + extra)
        extra = []
    passing = [n for n in sizes if memo.values[n] >= cfg.threshold]
    return SearchResult(
        size=passing[0] if passing else cfg.end,
        passed=bool(passing),
        values=dict(memo.values),
        rounds=memo.rounds,
        sizes_evaluated=memo.sizes,
    )


_SEARCH_FUNCTIONS: dict[str, Callable[..., SearchResult]] = {
    "paper": lambda evaluate, config, max_size, prefetch, window, chunk: paper_search(
        evaluate, config
    ),
    "fast": lambda evaluate, config, max_size, prefetch, window, chunk: fast_search(
        evaluate, config, prefetch=prefetch, window=window
    ),
    "exhaustive": lambda evaluate, config, max_size, prefetch, window, chunk: exhaustive_search(
        evaluate, config, max_size=max_size, prefetch=prefetch, chunk=chunk
    ),
}


def run_search(
    kind: SearchKind,
    evaluate: Evaluate,
    config: AdaptiveConfig | None = None,
    *,
    max_size: int | None = None,
    prefetch: Iterable[int] = (),
    window: int | None = None,
    chunk: int | None = None,
) -> SearchResult:
    """Run the search named ``kind`` (see :data:`SEARCHES`).

    Args:
        kind: ``fast``, ``paper`` or ``exhaustive``.
        evaluate: Batched curve oracle.
        config: Search parameters (the paper's by default).
        max_size: Largest distinct size (the number of edges); used by ``exhaustive``.
        prefetch: Sizes to evaluate in the first round (``fast`` and ``exhaustive``).
        window: Speculation window of the ``fast`` search (see :func:`fast_search`).
        chunk: Sizes per oracle call of the ``exhaustive`` search (None = all at once).

    Raises:
        UnknownNameError: For an unknown search.
    """
    if kind not in _SEARCH_FUNCTIONS:
        raise UnknownNameError(f"unknown search {kind!r}; choose one of {', '.join(SEARCHES)}")
    return _SEARCH_FUNCTIONS[kind](
        evaluate, config or AdaptiveConfig(), max_size, list(prefetch), window, chunk
    )
