"""Searches on synthetic curves: the fast search returns the paper's answer on the same curve.

``reference_adaptive`` restates ``get_faithfulness_metrics_adaptive`` and
``get_faithfulness_metrics_binary_search_with_local_search`` of curt-tigges/circuits-over-time
(``get_circuits_over_time.py``, 007e53d) as plain loops over a curve function, counting every
``evaluate_graph`` call the original makes (its binary search keeps its own dict, and ``main``
evaluates the chosen size once more).
"""

from __future__ import annotations

import math
import random

import pytest

from circuit_atlas.errors import UnknownNameError
from circuit_atlas.search import (
    AdaptiveConfig,
    Baselines,
    exhaustive_search,
    fast_search,
    paper_search,
    run_search,
)


def reference_adaptive(f, threshold=0.8, start=25, end=1600, initial_step=25):
    calls = 0

    def ev(n):
        nonlocal calls
        calls += 1
        return f(n)

    def binary(lo_start, hi_end):
        local_dict = {}

        def size_value(n):
            if n not in local_dict:
                local_dict[n] = ev(n)
            return local_dict[n]

        low, high, best = lo_start, hi_end, None
        while low <= high:
            mid = (low + high) // 2
            score = size_value(mid)
            if score >= threshold:
                best, high = mid, mid - 1
            else:
                low = mid + 1
            if abs(score - threshold) <= threshold * 0.1:
                for offset in range(-5, 6):
                    if offset == 0:
                        continue
                    n = mid + offset
                    if lo_start <= n <= hi_end:
                        s = size_value(n)
                        if s >= threshold and (best is None or n < best):
                            best, high = n, n - 1
                            break
        return local_dict, (hi_end if best is None else best)

    logged = {}
    step, size, exceeded, min_size = initial_step, start, False, None
    while size < end:
        score = ev(size)
        logged[size] = score
        if score > threshold and not exceeded:
            exceeded = True
            found, min_size = binary(max(size - step, 1), size)
            step = initial_step * 2
            logged.update(found)
        if step < initial_step and not exceeded and (
            score < threshold * 0.75 or score < logged[size - step]
        ):
            step = max(initial_step, int(step / 0.5))
        if not exceeded and score > threshold * 0.75:
            step = max(1, int(step * 0.5))
        size += step
    passed = min_size is not None
    return (min_size if passed else end), passed, logged, calls + 1


def _noise(seed, n):
    return random.Random(seed * 1_000_003 + n).uniform(-1, 1)


def _curve(seed):
    """Deterministic non-monotone faithfulness curves of several shapes."""
    rng = random.Random(seed)
    kind = seed % 6
    center, width = rng.uniform(10, 1500), rng.uniform(5, 300)
    amp, top = rng.uniform(0.02, 0.25), rng.uniform(0.7, 1.3)

    def sigmoid(n):
        return top / (1 + math.exp(-(n - center) / width))

    if kind == 0:  # noisy sigmoid
        return lambda n: sigmoid(n) + amp * _noise(seed, n)
    if kind == 1:  # oscillating around the threshold band (step resets)
        return lambda n: 0.7 + 0.15 * math.sin(n / rng_period) + 0.05 * _noise(seed, n)
    if kind == 2:  # never passes
        return lambda n: 0.79 * sigmoid(n) / top + 0.0 * n
    if kind == 3:  # passes immediately, above 1
        return lambda n: 1.1 + 0.2 * _noise(seed, n)
    if kind == 4:  # quantised values hitting the threshold exactly (> vs >= matters)
        return lambda n: round(4 * sigmoid(n) + 0.6 * _noise(seed, n)) / 5
    return lambda n: sigmoid(n) - 0.3 * (abs(_noise(seed, n)) > 0.8)  # spiky dips


rng_period = 37.0


def _counting(f):
    calls = []

    def evaluate(sizes):
        calls.append(list(sizes))
        return [f(n) for n in sizes]

    return evaluate, calls


@pytest.mark.parametrize("seed", range(120))
def test_paper_and_fast_search_match_reference(seed):
    f = _curve(seed)
    size, passed, logged, calls = reference_adaptive(f)
    paper = paper_search(_counting(f)[0])
    assert (paper.size, paper.passed) == (size, passed)
    assert paper.reference_evaluations == calls
    assert {n: paper.values[n] for n in logged} == logged
    evaluate, batches = _counting(f)
    fast = fast_search(evaluate)
    assert (fast.size, fast.passed) == (size, passed)
    assert fast.rounds == len(batches) <= 8
    assert all(len(set(b)) == len(b) for b in batches)  # memoised: no size twice in a call
    flat = [n for b in batches for n in b]
    assert len(flat) == len(set(flat)) == fast.sizes_evaluated  # nor across calls


def test_fast_is_not_the_global_minimum_on_non_monotone_curves():
    # Passing at 7, failing everywhere else until 400: the paper's scan never visits 7.
    def f(n):
        return 0.9 if n == 7 or n >= 400 else 0.1

    fast = fast_search(_counting(f)[0])
    exhaustive = exhaustive_search(_counting(f)[0], max_size=1000, chunk=300)
    assert fast.size == reference_adaptive(f)[0] == 376 + 24  # binary search in (375, 400]
    assert exhaustive.size == 7 and exhaustive.passed
    assert exhaustive.rounds == 4 and exhaustive.sizes_evaluated == 1000


def test_fallback_when_nothing_passes():
    cfg = AdaptiveConfig(end=300)
    for search in ("fast", "paper", "exhaustive"):
        result = run_search(search, lambda sizes: [0.5] * len(sizes), cfg, max_size=200)
        assert result.size == 300 and not result.passed


def test_small_config_and_prefetch_in_first_round():
    evaluate, batches = _counting(lambda n: n / 100)
    cfg = AdaptiveConfig(threshold=0.5, start=5, end=200, initial_step=10)
    result = fast_search(evaluate, cfg, prefetch=[150, 190])
    assert result.size == reference_adaptive(lambda n: n / 100, 0.5, 5, 200, 10)[0] == 50
    assert 150 in batches[0] and 190 in batches[0]


def test_errors():
    with pytest.raises(ValueError, match="start=0"):
        AdaptiveConfig(start=0)
    with pytest.raises(ValueError, match="initial_step=0"):
        AdaptiveConfig(initial_step=0)
    with pytest.raises(UnknownNameError, match="unknown search 'smart'"):
        run_search("smart", lambda s: s)
    with pytest.raises(ValueError, match="returned 1 values for 63"):
        fast_search(lambda sizes: [0.0])


# ----------------------------------------------------------------------------- faithfulness
def test_faithfulness_both_ways():
    b = Baselines(clean=2.0, empty=-1.0, clean_se=0.1)
    assert b.ratio(2.0) == 1.0 and b.normalized(2.0) == 1.0
    assert b.ratio(1.0) == 0.5
    assert b.normalized(-1.0) == 0.0
    assert b.normalized(0.5) == pytest.approx(0.5)
    assert b.faithfulness(1.0, "ratio") == 0.5
    with pytest.raises(UnknownNameError, match="unknown faithfulness 'kl'"):
        b.faithfulness(1.0, "kl")


def test_faithfulness_undefined_when_gap_is_noise():
    tiny = Baselines(clean=5e-4, empty=0.0)
    assert tiny.ratio(1.0) is None and tiny.normalized(1.0) is None
    assert not tiny.defined("ratio") and not tiny.defined("normalized")
    noisy = Baselines(clean=0.05, empty=0.0, clean_se=0.1)  # 0.5 standard errors
    assert noisy.ratio(0.04) is None and noisy.normalized(0.04) is None
    gap_only = Baselines(clean=1.0, empty=0.9995)  # ratio defined, normalised not
    assert gap_only.ratio(0.5) == 0.5 and gap_only.normalized(0.5) is None
    assert Baselines(clean=float("nan"), empty=0.0).ratio(1.0) is None
