"""Figure 4 series and fingerprint similarity (analyses.algorithm) and the report's algorithm
sections, on synthetic store tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from circuit_atlas import analyses
from circuit_atlas.errors import AnalysisError
from circuit_atlas.report import SECTIONS, ReportOptions, write_report
from tests.test_figures_report import MODELS, STEPS, TOKENS_PER_STEP, _images, synthetic_frames

ROLES = ("name_mover", "copy_suppression", "negative_name_mover", "negative_copy_suppression",
         "s_inhibition", "tertiary", "mlp", "other")  # fmt: skip


def _fp_rows(model, params, step, shares, reason=None, task="ioi", tokens=None):
    tokens = step * TOKENS_PER_STEP if tokens is None else tokens
    return [{"unit_id": f"{model}-{step}", "model": model, "params": params, "step": step,
             "tokens_seen": tokens, "task": task, "role": role,
             "share": None if shares is None else shares.get(role, 0.0),
             "attribution": None, "reason": reason} for role in ROLES]  # fmt: skip


def algorithm_frames(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """algorithm, algorithm_heads, fingerprints and self_repair tables for the synthetic units:
    undefined (gap too small) at the first two steps, then the algorithm settles."""
    tables = {k: [] for k in ("algorithm", "algorithm_heads", "fingerprints", "self_repair")}
    for _, unit in frames["units"].iterrows():
        model, step, params = unit["model"], int(unit["step"]), unit["params"]
        _, n_layers, n_heads = MODELS[model]
        keys = {"unit_id": unit["unit_id"], "model": model, "params": params, "step": step,
                "tokens_seen": unit["tokens_seen"], "task": "ioi"}  # fmt: skip
        early = step < 512
        progress = math.log1p(step) / math.log1p(max(STEPS))
        for panel, level in (("direct", 80), ("s_inhibition", 60), ("tertiary", 40)):
            undefined = early or (panel == "tertiary" and step == 1000)
            reason = "gap_too_small" if early else ("no_pure_s_inhibition" if undefined else None)
            tables["algorithm"].append({
                **keys, "panel": panel, "pct_effect": None if undefined else level * progress,
                "reason": reason, "denominator": "circuit", "identified_effect": None,
                "total_effect": None, "n_identified": 1, "n_denominator": 5,
                "heads": f"a{n_layers - 1}.h0", "clean_logit_diff": progress,
                "corrupted_logit_diff": -progress,
            })  # fmt: skip
            if model != "tiny-a":  # tiny-a's units predate the intervals (schema v9)
                value = tables["algorithm"][-1]["pct_effect"]
                tables["algorithm"][-1].update({
                    "pct_effect_ci_low": None if value is None else value - 5.0,
                    "pct_effect_ci_high": None if value is None else value + 7.0,
                    "ci_reason": reason, "n_examples": 40, "ci_n_resamples": 1000,
                    "ci_seed": 0})  # fmt: skip
        for layer in range(n_layers):
            for head in range(n_heads):
                role = None
                if not early and (layer, head) == (n_layers - 1, 0):
                    role = "name_mover"
                elif not early and (layer, head) == (n_layers - 2, 1):
                    role = "s_inhibition"
                tables["algorithm_heads"].append({
                    "unit_id": keys["unit_id"], "model": model, "step": step, "task": "ioi",
                    "layer": layer, "head": head, "node": f"a{layer}.h{head}", "role": role,
                    "direct_effect": -0.1, "in_circuit": True,
                })  # fmt: skip
        shares = None if early else {"name_mover": 0.5 - 0.1 * (1 - progress),
                                     "s_inhibition": 0.3, "mlp": 0.2 + 0.1 * (1 - progress)}
        tables["fingerprints"] += _fp_rows(model, params, step, shares,
                                           "gap_too_small" if early else None)  # fmt: skip
        ablated = not early and step >= 4000
        tables["self_repair"].append({
            **keys, "n_ablated": 1 if ablated else 0,
            "ablated": f"a{n_layers - 1}.h0" if ablated else "", "clean_logit_diff": progress,
            "ablated_logit_diff": progress / 2, "logit_diff_change": -progress / 2 if ablated
            else 0.0, "logit_diff_change_pct": -50.0 if ablated else 0.0,
            "backup_heads": f"a{n_layers - 1}.h1" if ablated else "",
            "reason": None if ablated else "no_name_movers",
        })  # fmt: skip
    return {k: pd.DataFrame(v) for k, v in tables.items()}


def test_similarity_over_time_to_previous_and_final():
    a = {"name_mover": 0.6, "mlp": 0.4}
    b = {"name_mover": 0.4, "mlp": 0.6}
    rows = (_fp_rows("m", 1, 1000, a) + _fp_rows("m", 1, 2000, None, "gap_too_small")
            + _fp_rows("m", 1, 3000, b) + _fp_rows("m", 1, 4000, b))  # fmt: skip
    frame = pd.DataFrame(rows)
    prev = analyses.fingerprint_similarity_over_time(frame)
    assert prev["step_from"].tolist() == [1000, 2000, 3000]
    assert math.isnan(prev["similarity"].iloc[0]) and math.isnan(prev["similarity"].iloc[1])
    assert prev["reason"].iloc[0] == "step 2000: gap_too_small"
    assert prev["similarity"].iloc[2] == pytest.approx(1.0) and pd.isna(prev["reason"].iloc[2])
    final = analyses.fingerprint_similarity_over_time(frame, reference="final")
    assert final["similarity"].iloc[0] == pytest.approx(0.8)  # 1 - (0.2 + 0.2) / 2
    assert final["similarity"].iloc[-1] == pytest.approx(1.0)  # itself
    stable = analyses.algorithm_stability(final, threshold=0.9)
    assert stable["stable_from_step"].tolist() == [3000] and stable["defined"].tolist() == [3]
    loose = analyses.algorithm_stability(final, threshold=0.8)
    assert loose["stable_from_step"].tolist() == [1000]
    subset = analyses.fingerprint_similarity_over_time(frame, checkpoints=[1000, 3000])
    assert subset["similarity"].tolist() == pytest.approx([0.8])
    with pytest.raises(AnalysisError, match="reference must be"):
        analyses.fingerprint_similarity_over_time(frame, reference="first")
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['share'"):
        analyses.fingerprint_similarity_over_time(frame.drop(columns=["share"]))


def test_similarity_across_sizes_at_matched_tokens():
    a = {"name_mover": 1.0}
    b = {"name_mover": 0.5, "other": 0.5}
    rows = (_fp_rows("small", 1, 1000, a) + _fp_rows("small", 1, 2000, a)
            + _fp_rows("big", 9, 1000, b) + _fp_rows("big", 9, 1001, b,
                                                     tokens=2000 * TOKENS_PER_STEP * 1.01)
            + _fp_rows("big", 9, 5000, b))  # fmt: skip
    across = analyses.fingerprint_similarity_across_sizes(pd.DataFrame(rows))
    assert across[["model_a", "model_b"]].drop_duplicates().values.tolist() == [["small", "big"]]
    assert across["step_b"].tolist() == [1000, 1001]  # nearest within 5 %; 5000 unmatched
    assert across["similarity"].tolist() == pytest.approx([0.5, 0.5])
    strict = analyses.fingerprint_similarity_across_sizes(pd.DataFrame(rows), rtol=0.0)
    assert strict["step_a"].tolist() == [1000]
    table = analyses.cross_size_table(across)
    assert table[["matched", "defined", "mean", "final"]].values.tolist() == [[2, 2, 0.5, 0.5]]
    assert analyses.share_similarity(a, a) == 1.0 and math.isnan(analyses.share_similarity(a, None))
    with pytest.raises(AnalysisError, match="rtol must be >= 0"):
        analyses.fingerprint_similarity_across_sizes(pd.DataFrame(rows), rtol=-1)


def test_algorithm_series_keeps_undefined_points():
    frames = synthetic_frames(models={"tiny-a": MODELS["tiny-a"]}, tasks={"ioi": "logit_diff"})
    series = analyses.algorithm_series(algorithm_frames(frames)["algorithm"])
    assert len(series) == 3 * len(STEPS)
    early = series[series["step"] < 512]
    assert early["pct_effect"].isna().all() and set(early["reason"]) == {"gap_too_small"}
    late = series[(series["step"] == max(STEPS)) & (series["panel"] == "direct")]
    assert late["pct_effect"].tolist() == pytest.approx([80.0])
    # tiny-a's rows have no interval columns: every defined point says so, none has bounds.
    assert series["ci_low"].isna().all() and series["ci_high"].isna().all()
    defined = series["pct_effect"].notna()
    assert (series.loc[defined, "ci_reason"] == "not_computed").all()
    assert series.loc[~defined, "ci_reason"].isna().all()


def test_algorithm_series_passes_the_stored_intervals_through():
    frames = synthetic_frames(models={"tiny-b": MODELS["tiny-b"]}, tasks={"ioi": "logit_diff"})
    series = analyses.algorithm_series(algorithm_frames(frames)["algorithm"])
    defined = series[series["pct_effect"].notna()]
    assert (defined["ci_low"] == defined["pct_effect"] - 5).all()
    assert (defined["ci_high"] == defined["pct_effect"] + 7).all()
    assert defined["ci_reason"].isna().all() and set(defined["ci_n_resamples"]) == {1000}


@pytest.fixture(scope="module")
def report_text(tmp_path_factory):
    frames = synthetic_frames(tasks={"ioi": "logit_diff"})
    frames.update(algorithm_frames(frames))
    out = tmp_path_factory.mktemp("algo-report") / "report.html"
    write_report(frames, out, options=ReportOptions(dpi=40, diagrams_per_series=1))
    return out.read_text(encoding="utf-8")


def test_report_renders_the_algorithm_sections(report_text):
    text = report_text
    for anchor in ("algorithm", "algorithm-circuit", "algorithm-stability", "self-repair"):
        assert f'id="{anchor}"' in text and SECTIONS[anchor] in text
    # Undefined points are named with their reason, in words.
    assert "Undefined points" in text and "gap_too_small" in text
    assert "the clean–corrupted logit difference is within noise" in text
    assert "no_pure_s_inhibition" in text
    assert "Undefined fingerprints (gaps)" in text
    # Stability and cross-size tables, and the self-repair table with the backup heads.
    assert "Stability of the algorithm" in text and "stable_from_step" in text
    assert "Across sizes at matched tokens seen" in text and "tiny-b" in text
    assert "a2.h1" in text and "backup_heads" in text  # tiny-b's backup head
    assert "Checkpoints without such a name mover" in text
    # Figure 4's intervals: how they are computed, their values, and why tiny-a has none.
    from tests.report_html import section as report_section

    algo = report_section(text, "algorithm")
    assert "No interval: each share" not in algo
    assert "Vertical bars: 95 % percentile bootstrap interval over prompts" in algo
    assert "1000 resamples of the IOI prompts with replacement, seed 0" in algo
    assert "The plotted values and intervals" in algo
    assert "No interval at tiny-a/direct, tiny-a/s_inhibition, tiny-a/tertiary" in algo
    assert "written before schema v9" in algo
    # Figure 4 B-D, one role diagram per model, the stability figure; plus the earlier sections.
    plain = synthetic_frames(tasks={"ioi": "logit_diff"})
    assert len(_images(text)) == 1 + len(MODELS) + 1 + _image_count(plain)


def _image_count(frames) -> int:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = write_report(frames, Path(tmp) / "r.html",
                           options=ReportOptions(dpi=20, diagrams_per_series=1))
        return len(_images(out.read_text(encoding="utf-8")))


def test_report_without_algorithm_tables_says_so(tmp_path):
    frames = synthetic_frames(models={"solo": (70_426_624, 2, 2)}, steps=(1000,))
    text = write_report(frames, tmp_path / "r.html", options=ReportOptions(dpi=20)).read_text()
    assert "No IOI algorithm decomposition in the store" in text
    assert "No algorithm fingerprints in the store" in text
    assert "No self-repair results in the store" in text
    assert np.isfinite(len(text))
