"""The bootstrap over prompts: a hand computation, a slow reference, coverage, determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from circuit_atlas.analyses import bootstrap_ci, faithfulness_intervals, metric_intervals
from circuit_atlas.errors import AnalysisError


def test_two_values_by_hand():
    # The mean of a resample of [0, 1] is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so with
    # many resamples the 2.5 % quantile is 0 and the 97.5 % quantile is 1; at level 0.4 both
    # the 30 % and the 70 % quantile are 0.5 (P(mean = 0) = 0.25 < 0.3, P(mean <= 0.5) = 0.75).
    ci = bootstrap_ci([0.0, 1.0], n_resamples=4000, seed=3)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)
    assert (ci.n_resamples, ci.n_valid, ci.level, ci.seed) == (4000, 4000, 0.95, 3)
    narrow = bootstrap_ci([0.0, 1.0], n_resamples=4000, seed=3, level=0.4)
    assert (narrow.low, narrow.high) == (0.5, 0.5)
    constant = bootstrap_ci([2.5] * 7)
    assert (constant.estimate, constant.low, constant.high) == (2.5, 2.5, 2.5)


def _reference(values, statistic, n_resamples, seed, level):
    """One resample at a time, sorted, quantiles by linear interpolation written out."""
    data = np.asarray(values, dtype=float)
    indices = np.random.default_rng(seed).integers(0, len(data), size=(n_resamples, len(data)))
    stats = sorted(statistic(data[row]) for row in indices)

    def quantile(q):
        h = (len(stats) - 1) * q
        lo = math.floor(h)
        hi = min(lo + 1, len(stats) - 1)
        return stats[lo] + (h - lo) * (stats[hi] - stats[lo])

    alpha = (1 - level) / 2
    return quantile(alpha), quantile(1 - alpha)


def test_equals_a_one_resample_at_a_time_reference():
    values = np.random.default_rng(7).gamma(2.0, size=31)
    ci = bootstrap_ci(values, n_resamples=500, seed=11, level=0.9)
    low, high = _reference(values, np.mean, 500, 11, 0.9)
    np.testing.assert_allclose([ci.low, ci.high], [low, high], rtol=1e-12, atol=0)
    median = bootstrap_ci(values, np.median, n_resamples=300, seed=2)
    np.testing.assert_allclose([median.low, median.high],
                               _reference(values, np.median, 300, 2, 0.95), rtol=1e-12)
    assert median.estimate == pytest.approx(float(np.median(values)), abs=1e-12)


def test_coverage_of_the_mean_on_normal_data():
    # 200 seeded trials of 50 draws from N(1.3, 2²): the 95 % interval holds the true mean in
    # about 95 % of them (percentile intervals under-cover slightly at n = 50); its width is about
    # 2 · 1.96 · σ/√n.
    mu, sigma, n = 1.3, 2.0, 50
    hits, widths = 0, []
    for trial in range(200):
        sample = np.random.default_rng(1000 + trial).normal(mu, sigma, size=n)
        ci = bootstrap_ci(sample, n_resamples=1000, seed=trial)
        hits += ci.low <= mu <= ci.high
        widths.append(ci.high - ci.low)
    assert 0.91 <= hits / 200 <= 0.985
    assert np.mean(widths) == pytest.approx(2 * 1.96 * sigma / math.sqrt(n), rel=0.08)


def test_same_seed_same_interval_other_seed_other_interval():
    values = np.random.default_rng(0).normal(size=40)
    a, b = bootstrap_ci(values, seed=5), bootstrap_ci(values, seed=5)
    assert a == b
    c = bootstrap_ci(values, seed=6)
    assert (c.low, c.high) != (a.low, a.high) and c.estimate == a.estimate


def test_rows_are_resampled_jointly():
    # circuit = 0.8 × clean on every prompt: every joint resample has ratio exactly 0.8; resampling
    # the two columns independently would give a wide interval.
    clean = np.random.default_rng(1).normal(3.0, 1.0, size=25)
    pairs = np.stack([0.8 * clean, clean], axis=1)
    ratio = bootstrap_ci(pairs, lambda s, axis: s[..., 0].mean(axis) / s[..., 1].mean(axis))
    np.testing.assert_allclose([ratio.estimate, ratio.low, ratio.high], [0.8] * 3, rtol=1e-12)


def test_bad_inputs_name_the_value():
    cases = [
        (dict(values=[]), r"non-empty \(n,\) or \(n, k\) array, got shape \(0,\)"),
        (dict(values=[1.0, float("nan")]), r"1 non-finite entries"),
        (dict(values=[1.0], n_resamples=0), r"n_resamples must be an integer ≥ 1, got 0"),
        (dict(values=[1.0], level=1.5), r"level must be in \(0, 1\), got 1.5"),
        (dict(values=[1.0], statistic="median"), r"statistic must be 'mean' or a callable"),
        (dict(values=[1.0, 2.0], statistic=lambda s, axis: s), r"must reduce axis 1 only"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AnalysisError, match=message):
            bootstrap_ci(**kwargs)


def _prompt_frame(rng) -> pd.DataFrame:
    rows = []
    for model, step, scale in (("m", 10, 1.0), ("m", 20, 2.0), ("n", 10, 0.5)):
        clean = rng.normal(scale, 0.5, size=30)
        runs = {"clean": clean, "corrupted": -clean, "empty": 0.1 * clean,
                "circuit": 0.9 * clean + rng.normal(0, 0.05, size=30)}
        rows += [{"unit_id": f"{model}{step}", "model": model, "step": step, "task": "ioi",
                  "run": run, "example": i, "metric": float(v)}
                 for run, values in runs.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_metric_and_faithfulness_intervals_per_point():
    frame = _prompt_frame(np.random.default_rng(4))
    out = metric_intervals(frame, n_resamples=200, seed=1).set_index(["model", "step"])
    assert sorted(out.index) == [("m", 10), ("m", 20), ("n", 10)]
    for (model, step), row in out.iterrows():
        clean = frame[(frame["model"] == model) & (frame["step"] == step)
                      & (frame["run"] == "clean")]["metric"]
        assert row["estimate"] == pytest.approx(clean.mean(), abs=1e-12)
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
        assert (row["n_examples"], row["n_resamples"], row["seed"]) == (30, 200, 1)
    faith = faithfulness_intervals(frame, n_resamples=200).set_index(["model", "step"])
    assert faith["estimate"].between(0.85, 0.95).all()
    assert (faith["ci_low"] <= faith["estimate"]).all()
    assert (faith["estimate"] <= faith["ci_high"]).all()
    assert (faith["ci_high"] - faith["ci_low"]).max() < 0.1  # correlated runs: a narrow ratio
    normalized = faithfulness_intervals(frame, kind="normalized", n_resamples=200)
    assert normalized["estimate"].between(0.8, 1.0).all()
    # A point whose stored faithfulness is undefined gets no interval.
    circuits = pd.DataFrame({"model": ["m", "m", "n"], "task": "ioi", "step": [10, 20, 10],
                             "faithfulness": [0.9, None, 0.9]})
    kept = faithfulness_intervals(frame, defined=circuits, n_resamples=50)
    assert sorted(zip(kept["model"], kept["step"], strict=True)) == [("m", 10), ("n", 10)]
    with pytest.raises(AnalysisError, match="kind must be 'ratio' or 'normalized', got 'x'"):
        faithfulness_intervals(frame, kind="x")
    with pytest.raises(AnalysisError, match="prompt_metrics"):
        metric_intervals(frame.drop(columns=["run"]))


def test_chunked_resampling_equals_one_draw(monkeypatch):
    import circuit_atlas.analyses.uncertainty as uncertainty

    values = np.random.default_rng(9).normal(2.0, 1.0, size=(40, 2))
    ratio = lambda s, axis: s[..., 0].mean(axis) / s[..., 1].mean(axis)  # noqa: E731
    whole = bootstrap_ci(values, ratio, n_resamples=250, seed=1)
    monkeypatch.setattr(uncertainty, "_CHUNK_ELEMENTS", 7 * 80)  # 7 resamples at a time
    assert bootstrap_ci(values, ratio, n_resamples=250, seed=1) == whole
    with pytest.raises(AnalysisError, match="returned 500 values for 250 resamples"):
        bootstrap_ci(values, n_resamples=250)  # the mean of (n, 2) rows is two numbers
