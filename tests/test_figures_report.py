"""Tests of circuit_atlas.figures and circuit_atlas.report on synthetic store tables."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from circuit_atlas import analyses, figures
from circuit_atlas.errors import AnalysisError
from circuit_atlas.report import SECTIONS, ReportFrames, ReportOptions, write_report

TOKENS_PER_STEP = 2_097_152
STEPS = (0, 64, 512, 1000, 4000, 143000)
MODELS = {"tiny-a": (70_426_624, 2, 4), "tiny-b": (162_322_944, 3, 4)}  # params, layers, heads
TASKS = {"ioi": "logit_diff", "sva": "prob_diff"}


def _graph_edges(n_layers: int, n_heads: int) -> list[tuple[str, str, str]]:
    """(edge name, parent, child) of a parallel-residual EAP-IG graph."""
    out = []
    for layer in range(n_layers):
        upstream = ["input"] + [
            n for lo in range(layer) for n in [f"a{lo}.h{h}" for h in range(n_heads)] + [f"m{lo}"]
        ]
        for head in range(n_heads):
            for parent in upstream:
                out += [(f"{parent}->a{layer}.h{head}<{q}>", parent, f"a{layer}.h{head}")
                        for q in "qkv"]  # fmt: skip
        out += [(f"{p}->m{layer}", p, f"m{layer}") for p in upstream]  # not same-layer heads
    everything = ["input"] + [
        n for lo in range(n_layers) for n in [f"a{lo}.h{h}" for h in range(n_heads)] + [f"m{lo}"]
    ]
    out += [(f"{p}->logits", p, "logits") for p in everything]
    return out


def synthetic_frames(
    models=MODELS, steps=STEPS, tasks=TASKS, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Store tables of a fake study: ioi emerges in both models, sva only in the larger one,
    and sva's faithfulness is undefined for the small model."""
    rng = np.random.default_rng(seed)
    tables: dict[str, list[dict]] = {k: [] for k in ("units", "task_metrics", "circuits",
                                                     "edges", "nodes", "curves")}  # fmt: skip
    for model, (params, n_layers, n_heads) in models.items():
        graph = _graph_edges(n_layers, n_heads)
        base_scores = rng.normal(size=len(graph))
        for i, step in enumerate(steps):
            unit = f"{model}-{step}"
            keys = {"unit_id": unit, "model": model, "params": params, "step": step,
                    "tokens_seen": step * TOKENS_PER_STEP}  # fmt: skip
            errors = {"gender-pronoun": "name 'Judy' is not a single token"} if i == 0 else {}
            tables["units"].append({
                **keys, "source_kind": "suite", "status": "complete" if not errors else "partial",
                "settings": json.dumps({"tasks": list(tasks), "threshold": 0.8}),
                "spec": json.dumps({"n_layers": n_layers, "n_heads": n_heads}),
                "versions": json.dumps({"torch": "2.13.0", "circuit_atlas": "0.1.0"}),
                "timings": json.dumps({"total": 1.0}), "errors": json.dumps(errors),
                "finished_at": pd.Timestamp("2025-01-01", tz="UTC"),
            })  # fmt: skip
            progress = 1 / (1 + np.exp(-(np.log1p(step) - np.log(800))))
            for task, kind in tasks.items():
                learns = not (task == "sva" and model == "tiny-a")
                height = params / 5e7 if learns else -0.2
                value = height * progress + rng.normal(0, 0.02)
                tables["task_metrics"].append({
                    **keys, "task": task, "metric_kind": kind, "clean_metric": value,
                    "corrupted_metric": -value, "accuracy": 0.5 + progress / 2, "rank0": 0.1,
                    "prob_mass": 0.2, "logit_diff": value, "prob_diff": value / 3,
                    "n_examples": 70,
                })  # fmt: skip
                scores = base_scores + rng.normal(0, 1.0 - 0.8 * progress, size=len(graph))
                k = 8 + 3 * i
                chosen = set(np.argsort(-np.abs(scores))[:k].tolist())
                names = set()
                for j, (name, parent, child) in enumerate(graph):
                    inside = j in chosen
                    names |= {parent, child} if inside else set()
                    tables["edges"].append({**keys, "task": task, "edge": name, "parent": parent,
                                            "child": child, "score": float(scores[j]),
                                            "in_circuit": inside})  # fmt: skip
                all_nodes = {p for _, p, _ in graph} | {"logits"}
                tables["nodes"] += [{**keys, "task": task, "node": n, "in_circuit": n in names}
                                    for n in sorted(all_nodes)]  # fmt: skip
                undefined = task == "sva" and model == "tiny-a"
                faith = np.nan if undefined else 0.8 + 0.1 * rng.random()
                tables["circuits"].append({
                    **keys, "task": task, "n_edges": k, "n_nodes": len(names),
                    "faithfulness": faith, "faithfulness_normalized": faith, "threshold": 0.8,
                    "search": "fast", "method": "EAP-IG-inputs",
                })  # fmt: skip
                tables["curves"] += [
                    {**keys, "task": task, "n_requested": n, "n_edges": n,
                     "n_nodes": min(n + 2, len(all_nodes)), "metric": value * n / 32,
                     "faithfulness": np.nan if undefined else (n / 32) ** (1 - progress / 2)}
                    for n in (2, 4, 8, 16, 32)
                ]  # fmt: skip
    frames = {k: pd.DataFrame(v) for k, v in tables.items()}
    frames["units"] = frames["units"].drop(columns=["task"], errors="ignore")
    frames.update(_component_frames(frames["nodes"], rng))
    return frames


def _component_frames(nodes: pd.DataFrame, rng) -> dict[str, pd.DataFrame]:
    """component_scores and component_heads: name-mover scores of every head, rising over
    training for head 0 of the last layer, linked to the ioi circuits of ``nodes``."""
    heads = nodes[nodes["node"].str.startswith("a") & (nodes["task"] == "ioi")].copy()
    heads["layer"] = heads["node"].str.extract(r"a(\d+)").astype(int)
    heads["head"] = heads["node"].str.extract(r"h(\d+)").astype(int)
    last = heads.groupby("model")["layer"].transform("max")
    rising = (heads["layer"] == last) & (heads["head"] == 0)
    progress = np.log1p(heads["step"]) / np.log1p(max(STEPS))
    heads["score"] = np.where(rising, progress, 0.05 * rng.random(len(heads)))
    heads["component"] = "name_mover"
    heads["is_component"] = heads["score"] > 0.1
    scores = heads[["unit_id", "model", "params", "step", "tokens_seen", "component", "layer",
                    "head", "score"]]  # fmt: skip
    linked = heads[["unit_id", "model", "step", "task", "component", "layer", "head", "node",
                    "score", "is_component", "in_circuit"]]  # fmt: skip
    return {"component_scores": scores.reset_index(drop=True),
            "component_heads": linked.reset_index(drop=True)}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synthetic_frames()


# --- figures ---------------------------------------------------------------------------------


def test_figures_build_without_pyplot(frames):
    import matplotlib

    backend = matplotlib.get_backend()
    perf = analyses.task_performance(frames["task_metrics"])
    emergence = analyses.emergence_table(frames["task_metrics"], "clean_metric")
    built = [  # the other figures are drawn by the report tests
        figures.performance_figure(perf, emergence=emergence),
        figures.faithfulness_figure(
            analyses.circuit_size(frames["circuits"]), frames["curves"], threshold=0.8
        ),
    ]
    for figure in built:
        assert isinstance(figure, Figure)
        png = base64.b64decode(figures.figure_to_png(figure, dpi=40))
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend  # no global state changed
    assert built[0].axes[0].get_xscale() == "log"
    assert len(built[0].axes[0].get_lines()) >= 2  # one line per model (+ markers)


def test_model_colors_order_by_size():
    frame = pd.DataFrame({"model": ["big", "small", "mid"], "params": [1e9, 1e7, 1e8]})
    colors = figures.model_colors(frame)
    assert list(colors) == ["small", "mid", "big"]
    assert colors["small"] != colors["big"]
    assert list(figures.model_colors(pd.DataFrame({"model": ["x"]}))) == ["x"]  # no params


def test_circuit_diagram_layers_and_empty(frames):
    edges = frames["edges"]
    one = edges[(edges["unit_id"] == "tiny-b-143000") & (edges["task"] == "ioi")]
    figure = figures.circuit_diagram(one[one["in_circuit"]], title="tiny-b ioi")
    assert figure.axes[0].get_title() == "tiny-b ioi"
    assert len(figure.axes[0].collections) == 1  # the edge LineCollection
    empty = figures.circuit_diagram(one.iloc[0:0], title="none")
    assert "empty circuit" in [t.get_text() for t in empty.axes[0].texts]


# --- report ----------------------------------------------------------------------------------


def _images(text: str) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)


def test_report_is_one_self_contained_file_with_every_section(frames, tmp_path):
    notes = ["sva was trained with a curriculum", "<script>alert(1)</script> is escaped"]
    out = write_report(
        frames,
        tmp_path / "reports" / "report.html",
        config_text="[study]\nname = 'synthetic'",
        versions={"numpy": np.__version__},
        notes=notes,
        title="Synthetic study",
        options=ReportOptions(dpi=50, diagrams_per_series=1),
    )
    assert list(tmp_path.rglob("*")) == [tmp_path / "reports", out]  # one file, nothing else
    text = out.read_text(encoding="utf-8")
    for anchor, heading in SECTIONS.items():
        assert f'id="{anchor}"' in text
        assert heading in text
    assert "sva was trained with a curriculum" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "http://" not in text and "https://" not in text
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attribute.startswith(("data:image/png;base64,", "#")), attribute
    assert "<link" not in text and "@import" not in text and "url(" not in text
    images = _images(text)
    # 4 analysis figures + 1 diagram per model x task with faithful circuits (tiny-a/sva has
    # undefined faithfulness everywhere: its fallback circuits are left out and counted) + the
    # component figures 2 and 3.
    assert len(images) == 4 + 3 + 2
    assert "Left out of circuit size, stability and diagrams" in text
    assert text.count("Left out of circuit size") == 2  # in the size and stability sections
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    # Honest statement of what did not emerge, and of the undefined faithfulness.
    assert "did NOT emerge in 1 of 2 model(s): tiny-a" in text
    assert "Faithfulness is undefined" in text
    assert "name 'Judy' is not a single token" in text
    assert "[study]" in text and "numpy" in text


def test_report_handles_a_model_with_one_checkpoint_and_missing_tables(tmp_path):
    frames = synthetic_frames(models={"solo": (70_426_624, 2, 2)}, steps=(1000,))
    del frames["curves"], frames["nodes"]
    out = write_report(frames, tmp_path / "r.html", options=ReportOptions(dpi=40))
    text = out.read_text(encoding="utf-8")
    assert "Only one checkpoint for: solo" in text
    assert "No model has two analysed checkpoints" in text
    assert "Fewer than three models" in text
    assert len(_images(text)) >= 3


def test_report_frames_accepts_aliases_and_rejects_unknown(frames):
    loaded = ReportFrames.load({"faithfulness": frames["curves"]})
    assert len(loaded.curves) == len(frames["curves"]) and loaded.units.empty
    with pytest.raises(AnalysisError, match=r"unknown table\(s\) \['bogus'\]"):
        ReportFrames.load({"bogus": pd.DataFrame()})
    with pytest.raises(AnalysisError, match="cannot read report data from int"):
        ReportFrames.load(3)


def test_report_from_a_results_store_directory(tmp_path):
    store_module = pytest.importorskip("circuit_atlas.store")
    frames = synthetic_frames(
        models={"tiny-b": MODELS["tiny-b"]}, steps=(512, 1000, 2000), tasks={"ioi": "logit_diff"}
    )
    frames["prompt_metrics"] = _prompt_metrics(frames)
    store = store_module.ResultsStore(tmp_path / "results", create=True)
    for unit_id in frames["units"]["unit_id"]:
        tables = {}
        for name, schema in store_module.TABLES.items():
            if name not in frames:  # the algorithm tables: written empty
                continue
            rows = frames[name][frames[name]["unit_id"] == unit_id].copy()
            for column in schema.names:
                if column not in rows.columns:
                    rows[column] = None
            tables[name] = rows[schema.names]
        assert store.write_unit(unit_id, tables)
    out = write_report(
        tmp_path / "results", tmp_path / "report.html", options=ReportOptions(dpi=40)
    )
    text = out.read_text(encoding="utf-8")
    assert "tiny-b" in text and 'id="diagrams"' in text
    # 4 figures + 3 checkpoints of one task + component figures 2 and 3, read from the store.
    assert len(_images(text)) == 4 + 3 + 2
    section = text[text.index('id="components"') : text.index('id="config"')]
    assert "<td>a2.h0</td>" in section  # the head whose name-mover score rises is chosen
    # The per-prompt metrics come back from the store: Figure 1 has bootstrap bands.
    from tests.report_html import section as report_section
    from tests.report_html import table_after

    plotted = table_after(report_section(text, "performance"), "The plotted values")
    assert [r["band"] for r in plotted] == ["bootstrap CI over prompts"] * 3


def test_algorithm_figure_draws_when_every_value_is_undefined() -> None:
    # regression: a log token axis with nothing finite on it made savefig raise
    import numpy as np

    from circuit_atlas.components.algorithm.figures import PANEL_TITLES, algorithm_figure
    from circuit_atlas.figures import figure_to_png

    panel = next(iter(PANEL_TITLES))
    series = pd.DataFrame({"panel": [panel] * 2, "model": ["m", "m"],
                           "tokens_seen": [2048, 4096], "pct_effect": [np.nan, np.nan]})
    assert figure_to_png(algorithm_figure(series)).startswith("iVBOR")  # base64 PNG


def _prompt_metrics(frames: dict[str, pd.DataFrame], n: int = 24) -> pd.DataFrame:
    """Per-prompt metrics around each unit's stored means (clean, corrupted, empty, circuit)."""
    rng = np.random.default_rng(5)
    rows = []
    for _, r in frames["task_metrics"].iterrows():
        clean = rng.normal(r["clean_metric"], 0.3, size=n)
        runs = {"clean": clean, "corrupted": -clean, "empty": 0.05 * clean,
                "circuit": 0.85 * clean + rng.normal(0, 0.1, size=n)}
        rows += [{"unit_id": r["unit_id"], "model": r["model"], "step": r["step"],
                  "task": r["task"], "run": run, "example": i, "metric": float(v)}
                 for run, values in runs.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_figures_shade_the_bands_they_are_given(frames):
    from matplotlib.collections import PolyCollection

    perf = analyses.task_performance(frames["task_metrics"])
    points = perf[perf["metric"] == "clean_metric"]
    bands = points.assign(ci_low=points["value"] - 0.1, ci_high=points["value"] + 0.1)
    shaded = figures.performance_figure(perf, bands=bands)
    plain = figures.performance_figure(perf)
    for figure, want in ((shaded, 2), (plain, 0)):  # one band per model in each task's panel
        for axis in figure.axes[:2]:
            assert sum(isinstance(c, PolyCollection) for c in axis.collections) == want
    band = next(c for c in shaded.axes[0].collections if isinstance(c, PolyCollection))
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    first = points[(points["task"] == "ioi") & (points["tokens_seen"] > 0)]
    model = first[first["model"] == first["model"].iloc[0]]
    np.testing.assert_allclose([low, high], [model["value"].min() - 0.1,
                                             model["value"].max() + 0.1], rtol=1e-9)


def test_single_seed_report_draws_bootstrap_bands(tmp_path):
    from tests.report_html import section, table_after

    frames = synthetic_frames(steps=(64, 1000, 143000))
    frames["prompt_metrics"] = _prompt_metrics(frames)
    out = write_report(frames, tmp_path / "r.html",
                       options=ReportOptions(dpi=30, diagrams_per_series=1,
                                             bootstrap_resamples=300, bootstrap_seed=4))
    text = out.read_text(encoding="utf-8")
    performance = section(text, "performance")
    assert ("Shaded: 95% percentile bootstrap interval over prompts (300 resamples of the "
            "prompts with replacement, seed 4") in performance
    plotted = table_after(performance, "The plotted values and intervals")
    assert len(plotted) == 2 * 3 * 2  # models x steps x tasks
    clean = frames["prompt_metrics"].query("run == 'clean'")
    means = clean.groupby(["model", "task", "step"])["metric"].mean()
    for row in plotted:
        assert row["band"] == "bootstrap CI over prompts" and row["n_seeds"] == "1"
        value, low, high = (float(row[c]) for c in ("value", "ci_low", "ci_high"))
        # The curve is the stored mean (task_metrics); the interval is around the prompts' mean.
        mean = means[(row["model"], row["task"], int(row["step"]))]
        assert low < mean < high and 0.05 < high - low < 0.5  # sd 0.3 / √24 · 2 · 1.96 ≈ 0.24
        assert math.isfinite(value)
    faithfulness = section(text, "faithfulness")
    assert "resampled jointly and the statistic is the ratio of their means" in faithfulness
    assert "The bottom row (faithfulness versus circuit size" in faithfulness  # says why not
    faith = table_after(faithfulness, "The plotted values and intervals")
    # tiny-a/sva's faithfulness is undefined: no point, no interval; the others have the
    # bootstrap interval of the prompts' ratio of means around that ratio.
    assert {(r["model"], r["task"]) for r in faith} == {("tiny-a", "ioi"), ("tiny-b", "ioi"),
                                                        ("tiny-b", "sva")}
    prompts = frames["prompt_metrics"].groupby(["model", "task", "step", "run"])["metric"].mean()
    for row in faith:
        key = (row["model"], row["task"], int(row["step"]))
        ratio = prompts[(*key, "circuit")] / prompts[(*key, "clean")]
        assert row["band"] == "bootstrap CI over prompts"
        assert float(row["ci_low"]) < ratio < float(row["ci_high"])
        if key[2] == 143000:  # a trained model: a narrow interval (early ones have m(M) ≈ 0)
            assert float(row["ci_high"]) - float(row["ci_low"]) < 0.3
    assert "One training run per model: no spread across seeds" in section(text, "seeds")


def test_report_without_prompt_metrics_says_why_there_is_no_band(frames, tmp_path):
    from tests.report_html import section, table_after

    out = write_report({k: v for k, v in frames.items() if k != "prompt_metrics"},
                       tmp_path / "r.html", options=ReportOptions(dpi=30, diagrams_per_series=1))
    performance = section(out.read_text(encoding="utf-8"), "performance")
    assert "No interval at tiny-a/ioi, tiny-a/sva, tiny-b/ioi, tiny-b/sva" in performance
    assert "written before results schema v6" in performance
    rows = table_after(performance, "The plotted values and intervals")
    assert {r["band"] for r in rows} == {"no interval"} and {r["ci_low"] for r in rows} == {"—"}
