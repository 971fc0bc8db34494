"""The demo: verdict logic and study file (fast), and the reduced end-to-end demo (slow, CI).

The integration test runs ``run_demo(preset="quick")`` — training a two-size suite on the real
corpus, the full study through the main runner, the report — and checks the issue's properties on
its own output (the results store and the HTML), never on hard-coded numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from circuit_atlas.demo import PRESETS, get_preset, judge_tasks, study_toml
from circuit_atlas.errors import UnknownNameError


def _metrics(rows):
    return pd.DataFrame(
        rows,
        columns=["model", "task", "step", "metric_kind", "clean_metric", "clean_metric_std",
                 "n_examples"],
    )  # fmt: skip


def _circuits(rows):
    return pd.DataFrame(
        rows, columns=["model", "task", "step", "faithfulness", "threshold", "n_edges"]
    )


def test_judge_tasks_needs_a_rise_beyond_the_spread_and_tracked_circuits() -> None:
    metrics = _metrics(
        [
            ("m", "ioi", 0, "logit_diff", 0.0, 0.2, 50),
            ("m", "ioi", 10, "logit_diff", 0.5, 0.3, 50),
            ("m", "ioi", 20, "logit_diff", 1.5, 0.4, 50),
            ("m", "sva", 0, "prob_diff", 0.0, 0.2, 50),
            ("m", "sva", 20, "prob_diff", 0.15, 0.2, 50),  # rise below the step-0 spread
            ("m", "gp", 0, "logit_diff", 0.0, 0.01, 4),
            ("m", "gp", 20, "logit_diff", 0.5, 2.0, 4),  # above the spread, within 3 SE
        ]
    )
    circuits = _circuits(
        [
            ("m", "ioi", 0, None, 0.8, 5),
            ("m", "ioi", 5, 1.0, 0.8, 0),  # empty: not a circuit
            ("m", "ioi", 10, 0.85, 0.8, 4),
            ("m", "ioi", 20, 0.9, 0.8, 7),
            ("m", "sva", 20, 0.95, 0.8, 3),
        ]
    )
    by_task = {v.task: v for v in judge_tasks(metrics, circuits, helped=["ioi"], min_found=2)}
    ioi, sva, gp = by_task["ioi"], by_task["sva"], by_task["gp"]
    assert not gp.rose
    assert ioi.rose and ioi.tracked and ioi.helped
    assert ioi.found_steps == (10, 20)
    assert ioi.rise == pytest.approx(1.5)
    assert ioi.stderr == pytest.approx(math.sqrt(0.2**2 / 50 + 0.4**2 / 50))
    assert not sva.rose and not sva.tracked and not sva.helped
    assert "did NOT emerge" in sva.sentence() and "plain text only" in sva.sentence()
    assert "EMERGED" in ioi.sentence() and "with curriculum help" in ioi.sentence()
    strict = {v.task: v for v in judge_tasks(metrics, circuits, helped=["ioi"], min_found=3)}
    assert strict["ioi"].rose and not strict["ioi"].tracked


def test_demo_study_file_is_a_valid_study(tmp_path: Path) -> None:
    from circuit_atlas.study.config import parse_study

    path = tmp_path / "study.toml"
    path.write_text(study_toml(get_preset("quick")))
    study = parse_study(path)  # load_study also needs the trained suite on disk
    assert [t.name for t in study.tasks] == ["ioi", "greater-than", "gender-pronoun", "sva"]
    assert study.models[0].kind == "suite"
    assert study.attribution.ig_steps == get_preset("quick").ig_steps
    with pytest.raises(UnknownNameError, match="unknown demo preset 'huge'"):
        get_preset("huge")


def test_presets_meet_the_issue_minimums() -> None:
    from circuit_atlas.training import checkpoint_steps

    # three sizes, so that emergence across scale and circuit size vs parameters have three
    # points; the CI preset keeps two to stay within its time budget
    assert len(PRESETS["full"].train.sizes) >= 3
    for preset in PRESETS.values():
        assert len(preset.train.sizes) >= 2
        assert "names" in preset.train.curriculum.shared
        assert len(checkpoint_steps(preset.train.steps, preset.train.n_even)) >= 12
        assert set(preset.task_n) == {"ioi", "greater-than", "gender-pronoun", "sva"}
        # the induction score's repeated sequence fits in the positions the models trained on
        assert 2 * preset.components["induction_seq_len"] <= preset.train.seq_len


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    from circuit_atlas.demo import run_demo
    from circuit_atlas.report import SECTIONS
    from circuit_atlas.store import ResultsStore

    result = run_demo(tmp_path / "demo", preset="quick", data_dir=data_dir, progress=False)

    manifest = json.loads((result.suite / "suite.json").read_text())
    assert len(manifest["sizes"]) >= 2
    assert all(len(r["steps"]) >= 12 and r["complete"] for r in manifest["sizes"].values())
    helped = manifest["curriculum"]["helped_tasks"]

    store = ResultsStore(result.results)
    metrics = store.table("task_metrics")
    circuits = store.table("circuits")
    units = store.table("units")
    assert set(metrics["task"]) == {"ioi", "greater-than", "gender-pronoun", "sva"}
    assert units.groupby("model")["step"].nunique().min() >= 12

    # Some (model, task) rises well beyond its step-0 value and the spread across examples there
    # (and by more than 3 standard errors), and
    # its minimal faithful circuit is found at several checkpoints (computed here, independently
    # of the demo's own verdicts).
    emerged = []
    for (model, task), rows in metrics.groupby(["model", "task"]):
        rows = rows.sort_values("step")
        first, last = rows.iloc[0], rows.iloc[-1]
        assert first["step"] == 0
        rise = last["clean_metric"] - first["clean_metric"]
        spread = first["clean_metric_std"]
        stderr = math.hypot(
            first["clean_metric_std"] / math.sqrt(first["n_examples"]),
            last["clean_metric_std"] / math.sqrt(last["n_examples"]),
        )
        sel = circuits[(circuits["model"] == model) & (circuits["task"] == task)]
        faithful = sel[(sel["faithfulness"] >= sel["threshold"]) & (sel["n_edges"] > 0)]
        if rise > spread and rise > 3 * stderr and faithful["step"].nunique() >= 3:
            emerged.append((model, task))
    assert emerged, metrics[["model", "task", "step", "clean_metric", "clean_metric_std"]]
    judged = {(v.model, v.task) for v in result.verdicts if v.tracked}
    assert judged == set(emerged)

    # Component scores are part of every unit, and tied to the circuits of the linked tasks.
    scores = store.table("component_scores")
    assert set(scores["unit_id"]) == set(units["unit_id"]), units[["unit_id", "errors"]]
    assert {"induction", "successor", "name_mover", "copy_suppression", "s_inhibition"} <= set(
        scores["component"]
    )
    heads = store.table("component_heads")
    assert {"greater-than", "ioi"} <= set(heads["task"])

    html = result.report.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in html
    assert "TRAINED WITH HELP" in html and all(task in html for task in helped)
    assert "did NOT emerge" in html or len(emerged) == len(set(metrics["task"])) * 2
    summary = json.loads((result.out / "demo.json").read_text())
    assert summary["failed_units"] == {}


def test_demo_seed_reaches_the_training_config(tmp_path: Path, monkeypatch) -> None:
    import circuit_atlas.data
    import circuit_atlas.training
    from circuit_atlas.demo import run_demo

    seen = []

    class Stop(Exception):
        pass

    def fake_train(config, *args, **kwargs):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(circuit_atlas.data, "ensure", lambda **kwargs: None)
    monkeypatch.setattr(circuit_atlas.data, "corpus_paths", lambda root=None: [])
    monkeypatch.setattr(circuit_atlas.training, "train_suite", fake_train)
    for seed, expected in ((None, 0), (1, 1)):
        with pytest.raises(Stop):
            run_demo(tmp_path / f"s{seed}", preset="quick", progress=False, seed=seed)
        assert seen[-1].seed == expected
        assert seen[-1].sizes == get_preset("quick").train.sizes  # nothing else changed
