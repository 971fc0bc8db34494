"""Bootstrap intervals over prompts of the IOI algorithm shares (Figure 4 B–D,
components.algorithm.intervals): a transcription of the ratio bootstrap, shrinking with more
prompts, undefined redraws, and the per-prompt effects the decomposition keeps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from circuit_atlas.components.algorithm import AlgorithmSettings, ioi_algorithm, pct_effect
from circuit_atlas.components.algorithm.intervals import pct_effect_interval
from circuit_atlas.components.path_patching import direct_effects
from tests import ioi_toy as toy
from tests.test_components_algorithm import _scores


def _hand_made(n: int, seed: int = 1):
    """(2, 2, n) per-prompt differences: head (1, 0) carries most, (0, 1) some, noise on all."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor([[0.05, -0.3], [-1.0, 0.1]], dtype=torch.float64)
    d = mean[..., None] + 0.5 * torch.randn(2, 2, n, generator=g, dtype=torch.float64)
    clean = 2.0 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    corrupted = -1.0 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return d, clean, corrupted


def _transcription(d, clean, corrupted, identified, pool, *, n_resamples, seed, min_total):
    """The ratio bootstrap written out: redraw prompts, effects of the redraw, their share."""
    d, clean, corrupted = d.numpy(), clean.numpy(), corrupted.numpy()
    n = d.shape[-1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    shares = []
    for rows in idx:
        gap = clean[rows].mean() - corrupted[rows].mean()
        effect = {h: d[h][rows].mean() / gap for h in pool}
        total = sum(effect.values())
        if abs(total) < min_total:
            continue
        shares.append(100 * sum(effect[h] for h in identified if h in pool) / total)
    return np.quantile(shares, [0.025, 0.975]), len(shares)


@pytest.mark.parametrize("denominator", ["all", "circuit"])
def test_interval_is_the_ratio_bootstrap_and_contains_the_share(denominator):
    d, clean, corrupted = _hand_made(12)
    identified = [(1, 0)]
    circuit = [(1, 0), (0, 1)] if denominator == "circuit" else None
    pool = circuit or [(a, b) for a in range(2) for b in range(2)]
    ci = pct_effect_interval(identified, d, clean, corrupted, denominator=denominator,
                             circuit=circuit, n_resamples=300, seed=7)  # fmt: skip
    (low, high), n_valid = _transcription(d, clean, corrupted, identified, pool,
                                          n_resamples=300, seed=7, min_total=1e-3)  # fmt: skip
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)
    assert ci.n_valid == n_valid == 300 and ci.n_examples == 12 and ci.seed == 7
    # The point estimate is pct_effect on the mean effects, and lies inside the interval.
    effects = d.mean(-1) / (clean.mean() - corrupted.mean())
    point = pct_effect(identified, effects, denominator=denominator, circuit=circuit).value
    assert ci.estimate == pytest.approx(point, rel=1e-12)
    assert ci.low < point < ci.high
    # Another seed gives another interval; the same seed the same one.
    again = pct_effect_interval(identified, d, clean, corrupted, denominator=denominator,
                                circuit=circuit, n_resamples=300, seed=7)  # fmt: skip
    other = pct_effect_interval(identified, d, clean, corrupted, denominator=denominator,
                                circuit=circuit, n_resamples=300, seed=8)  # fmt: skip
    assert (again.low, again.high) == (ci.low, ci.high) != (other.low, other.high)


def test_interval_shrinks_with_more_prompts():
    widths = []
    for n in (20, 2000):
        d, clean, corrupted = _hand_made(n, seed=3)
        ci = pct_effect_interval([(1, 0)], d, clean, corrupted, denominator="all")
        widths.append(ci.high - ci.low)
    # the standard error falls as 1/sqrt(n): 10x fewer width for 100x more prompts
    assert widths[1] < 0.25 * widths[0]


def test_redraws_with_a_vanishing_denominator_are_left_out():
    d, clean, corrupted = _hand_made(8)
    # Denominator heads whose per-prompt effects cancel exactly: undefined on every redraw.
    d[0, 0], d[0, 1] = d[1, 0], -d[1, 0]
    zero = pct_effect_interval([(0, 0)], d, clean, corrupted, denominator="circuit",
                               circuit=[(0, 0), (0, 1)])  # fmt: skip
    assert zero.low is None and zero.reason == "no_valid_resample" and zero.n_valid == 0
    # A denominator near zero on some redraws only: those are dropped, as the transcription does.
    d, clean, corrupted = _hand_made(10, seed=5)
    d[0, 1] = -d[1, 0] + 0.05 * torch.randn(10, generator=torch.Generator().manual_seed(2),
                                            dtype=torch.float64)  # fmt: skip
    circuit = [(1, 0), (0, 1)]
    ci = pct_effect_interval([(1, 0)], d, clean, corrupted, denominator="circuit",
                             circuit=circuit, min_total=0.01, n_resamples=400, seed=1)
    (low, high), n_valid = _transcription(d, clean, corrupted, [(1, 0)], circuit,
                                          n_resamples=400, seed=1, min_total=0.01)
    assert 0 < ci.n_valid == n_valid < 400
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)


def test_per_prompt_differences_average_to_the_effects():
    model, data = toy.model(), toy.data()
    values: dict = {}
    effects = direct_effects(model, data, baselines=values)
    diffs = values["differences"]
    assert tuple(diffs.shape) == (*effects.shape, len(data))
    gap = values["clean"].mean() - values["corrupted"].mean()
    torch.testing.assert_close(diffs.mean(-1) / gap, effects, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def planted():
    model, data = toy.model(), toy.data()
    scores = _scores(model, data)
    algo = ioi_algorithm(model, data, scores=scores, settings=AlgorithmSettings(denominator="all"),
                         run_self_repair=False, n_resamples=200, seed=4)  # fmt: skip
    return model, data, scores, algo


def test_decomposition_carries_an_interval_per_defined_panel(planted):
    model, data, scores, algo = planted
    assert set(algo.intervals) == {"direct", "s_inhibition", "tertiary"}
    for panel, p in algo.panels.items():
        ci = algo.intervals[panel]
        assert ci.n_resamples == 200 and ci.seed == 4
        if p.value is None:  # undefined share: no interval, for the share's own reason
            assert ci.low is None and ci.reason == p.reason
        else:
            assert ci.reason is None and ci.n_examples == len(data)
            assert ci.estimate == pytest.approx(p.value, rel=1e-9)
            assert ci.low <= p.value + 1e-9 and p.value - 1e-9 <= ci.high
    assert algo.intervals["direct"].low is not None
    # An S-inhibition result reused without per-prompt effects: the share, but no interval.
    old = dataclasses.replace(algo.s_inhibition, differences=None)
    again = ioi_algorithm(model, data, scores=scores, s_inhibition=old, run_self_repair=False,
                          settings=AlgorithmSettings(denominator="all"))  # fmt: skip
    assert again.panels["s_inhibition"].value == algo.panels["s_inhibition"].value
    assert again.intervals["s_inhibition"].reason == "no_per_prompt_effects"
    assert again.intervals["s_inhibition"].low is None
    assert again.intervals["direct"].low is not None


def test_rows_carry_the_interval_columns(planted):
    from circuit_atlas.components.algorithm import algorithm_tables
    from circuit_atlas.store_schema import ALGORITHM_CI_COLUMNS

    _, data, _, algo = planted
    rows = algorithm_tables(algo, [])["algorithm"]
    for row in rows:
        assert set(ALGORITHM_CI_COLUMNS) <= set(row)
        assert row["ci_n_resamples"] == 200 and row["ci_seed"] == 4
        assert row["n_examples"] == len(data)
        assert (row["pct_effect_ci_low"] is None) == (row["pct_effect"] is None)
