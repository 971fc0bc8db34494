"""The report's summary at the top of the page, collapsed tables, figure sizes, page order."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from circuit_atlas import analyses
from circuit_atlas.report import SECTIONS, ReportOptions, write_report
from circuit_atlas.report_frames import (
    COLLAPSE_ROWS,
    FIGURE_PX_PER_INCH,
    GRID_MIN_PX,
    html_table,
)
from circuit_atlas.report_summary import format_count
from tests.report_html import section
from tests.test_analyses_algorithm import algorithm_frames
from tests.test_figures_report import MODELS, _prompt_metrics, synthetic_frames

OPTIONS = ReportOptions(dpi=20, diagrams_per_series=1, bootstrap_resamples=200, bootstrap_seed=3)


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html).replace("  ", " ").strip()


def _cell(summary: str, row: str, model: str) -> str:
    """The text of the summary table's cell of ``model`` in the row ``row`` (data-task="ioi"
    or data-component="name_mover")."""
    found = re.search(rf'<tr {row}>(.*?)</tr>', summary, flags=re.S)
    assert found, f"no summary row {row}"
    cell = re.search(rf'<td data-model="{model}">(.*?)</td>', found.group(1), flags=re.S)
    assert cell, f"no cell for {model} in {row}"
    return _text(cell.group(1))


def _not_emerged(summary: str, task: str) -> str | None:
    """The text of the "did not emerge" line of ``task``, or None when there is none."""
    found = re.search(rf'<li data-task="{task}">(.*?)</li>', summary, flags=re.S)
    return None if found is None else _text(found.group(1))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    frames = synthetic_frames(steps=(64, 1000, 4000, 143000))
    frames["prompt_metrics"] = _prompt_metrics(frames)
    frames.update(algorithm_frames(frames))
    out = tmp_path_factory.mktemp("summary") / "report.html"
    write_report(frames, out, config_text="[study]", options=OPTIONS)
    return frames, out.read_text(encoding="utf-8")


def _emergence(frames) -> pd.DataFrame:
    """The emergence table the report uses, through the public analysis (no noise columns:
    the synthetic task metrics have no per-example spread)."""
    return analyses.emergence_table(
        frames["task_metrics"], "clean_metric", frac=OPTIONS.emergence_frac,
        baseline=OPTIONS.emergence_baseline, tolerance=OPTIONS.emergence_tolerance,
        min_final=OPTIONS.min_final_metric,
    )  # fmt: skip


def test_summary_comes_first_and_its_numbers_are_the_emergence_analysis(study):
    frames, text = study
    summary = section(text, "summary")
    assert text.index('<section id="summary">') < text.index("<nav>")  # before the contents
    table = _emergence(frames)
    assert table["emerged"].any() and not table["emerged"].all()  # the test can tell them apart
    last = frames["task_metrics"].groupby(["model", "task"])["step"].transform("max")
    prompts = frames["prompt_metrics"].merge(
        frames["task_metrics"].loc[frames["task_metrics"]["step"] == last,
                                   ["model", "task", "step"]])  # fmt: skip
    intervals = analyses.metric_intervals(
        prompts, run="clean", n_resamples=OPTIONS.bootstrap_resamples,
        seed=OPTIONS.bootstrap_seed, level=OPTIONS.ci_level,
    ).set_index(["model", "task"])  # fmt: skip
    for task, rows in table.groupby("task"):
        header = re.search(rf'<tr data-task="{task}"><th>(.*?)</th>', summary, flags=re.S)
        assert f"emerged in {int(rows['emerged'].sum())} of {len(rows)}" in _text(header.group(1))
        line = _not_emerged(summary, task)
        for _, r in rows.iterrows():
            cell = _cell(summary, f'data-task="{task}"', r["model"])
            label = f"{r['model']} ({format_count(r['params'])})"
            if r["emerged"]:
                assert cell.startswith(f"step {int(r['step']):,} "
                                       f"({format_count(r['tokens_seen'])} tokens)")
                assert line is None or label not in line
            else:  # named with the reason the not-emerged section gives, not as emerged
                assert cell.startswith("did not emerge") and "step" not in cell
                assert f"{label}: {r['reason']}" in line
                assert r["reason"] in section(text, "not-emerged")
            ci = intervals.loc[(r["model"], task)]
            assert cell.endswith(f"final {r['final_value']:.3g} "
                                 f"[{ci['ci_low']:.3g}, {ci['ci_high']:.3g}]")
    # Models smallest first, as analyses.model_order orders them.
    order = analyses.model_order(frames["units"])
    positions = [summary.index(f"{m} ({format_count(MODELS[m][0])} params)") for m in order]
    assert positions == sorted(positions)
    # Each fact links to its section.
    for anchor in ("emergence", "not-emerged", "performance", "components", "algorithm"):
        assert f'href="#{anchor}"' in summary


def test_summary_lists_a_task_that_emerged_nowhere_as_not_emerged(tmp_path):
    frames = synthetic_frames(models={"tiny-a": MODELS["tiny-a"]}, steps=(64, 1000, 143000))
    text = write_report(frames, tmp_path / "r.html", options=OPTIONS).read_text()
    summary = section(text, "summary")
    table = _emergence(frames).set_index("task")
    assert bool(table.loc["ioi", "emerged"]) and not bool(table.loc["sva", "emerged"])
    assert _cell(summary, 'data-task="ioi"', "tiny-a").startswith("step ")
    assert _not_emerged(summary, "ioi") is None
    assert _cell(summary, 'data-task="sva"', "tiny-a").startswith("did not emerge")
    line = _not_emerged(summary, "sva")
    assert "sva did not emerge in any model" in line
    assert table.loc["sva", "reason"] in line
    assert "No intervals: the store has no per-prompt metrics" in summary


def test_summary_names_the_component_heads_and_figure_4(study):
    frames, text = study
    summary = section(text, "summary")
    scores = frames["component_scores"]
    last = scores[scores["step"] == scores.groupby("model")["step"].transform("max")]
    for model, group in last.groupby("model"):
        best = group.loc[group["score"].idxmax()]
        assert _cell(summary, f'data-component="{best["component"]}"', model) == (
            f"a{best['layer']}.h{best['head']} ({best['score']:.3g})")
    series = analyses.algorithm_series(frames["algorithm"])
    defined = int(series["pct_effect"].notna().sum())
    assert 0 < defined < len(series)
    assert f"Figure 4 B–D: {defined} of {len(series)} points defined" in _text(summary)


def test_summary_of_a_store_without_components_or_algorithm_says_so(tmp_path):
    frames = synthetic_frames(models={"tiny-a": MODELS["tiny-a"]}, steps=(64, 143000))
    del frames["component_scores"], frames["component_heads"]
    summary = section(write_report(frames, tmp_path / "r.html", options=OPTIONS).read_text(),
                      "summary")  # fmt: skip
    assert "No component scores in the store" in summary
    assert "no algorithm decomposition in the store" in summary


def test_an_empty_store_writes_a_sentence_instead_of_a_summary(tmp_path):
    text = write_report({}, tmp_path / "empty.html").read_text(encoding="utf-8")
    summary = section(text, "summary")
    assert "The store holds no results" in summary
    assert "<li>" not in summary and "<table" not in summary
    for anchor in SECTIONS:  # every section is still there, saying what is missing
        assert f'<section id="{anchor}">' in text


def test_sections_end_with_config_then_versions(study):
    _, text = study
    assert list(SECTIONS)[-2:] == ["config", "versions"]
    found = re.findall(r'<section id="([^"]+)">', text)
    assert found == ["summary", *SECTIONS]
    assert found[-2:] == ["config", "versions"]


def test_html_table_collapses_long_tables_only():
    long = pd.DataFrame({"step": range(COLLAPSE_ROWS + 1), "value": 0.5})
    html = html_table(long)
    assert html.startswith('<details class="table"><summary>')
    assert f"Table: {COLLAPSE_ROWS + 1} rows × 2 columns" in html
    assert html.count("<tr") == COLLAPSE_ROWS + 2  # header + every row: whole, just closed
    assert "<details" not in html_table(long.head(COLLAPSE_ROWS))
    assert "<details" not in html_table(long, max_rows=None)
    assert "<details" in html_table(long.head(4), max_rows=3)


def test_a_long_table_in_the_report_is_collapsed(tmp_path):
    rows = [{"unit_id": f"u{s}", "model": "tiny", "params": 1, "step": s, "tokens_seen": s,
             "task": "ioi", "cpr": 0.5, "cmd": 0.1} for s in range(1, 2 * COLLAPSE_ROWS)]
    text = write_report({"mib": pd.DataFrame(rows)}, tmp_path / "r.html").read_text()
    mib = section(text, "mib")
    assert f"Table: {len(rows)} rows" in mib and "<details" in mib


def test_figures_are_shown_large(study):
    _, text = study
    widths = {kind: [int(w) for w in re.findall(rf'<img class="{kind}" width="(\d+)"', text)]
              for kind in ("figure", "small")}  # fmt: skip
    # Figure 1 has a panel per task (3.6 in each): at the display scale, not its pixel size.
    performance = section(text, "performance")
    first = int(re.search(r'width="(\d+)"', performance).group(1))
    assert first == round(2 * 3.6 * FIGURE_PX_PER_INCH) > 1000
    assert min(widths["figure"]) >= round(4.5 * FIGURE_PX_PER_INCH)
    assert widths["small"] and min(widths["small"]) >= GRID_MIN_PX  # diagrams in a grid
    assert "max-width:420px" not in text


def test_summary_headers_name_the_suite_only_when_there_are_several(tmp_path):
    frames = synthetic_frames(steps=(64, 1000, 143000))
    models = sorted(frames["units"]["model"].unique())
    one = section(write_report(frames, tmp_path / "one.html", options=OPTIONS).read_text(),
                  "summary")
    assert "suite " not in _text(one.split("</thead>")[0])
    units = frames["units"].copy()
    units["suite"] = ["pythia" if m == models[0] else "olmo" for m in units["model"]]
    frames = {**frames, "units": units}
    two = section(write_report(frames, tmp_path / "two.html", options=OPTIONS).read_text(),
                  "summary")
    header = _text(two.split("</thead>")[0])
    assert "suite pythia" in header and "suite olmo" in header
