"""Tests of circuit_atlas.explorer: the JSON it embeds, the page, the CLI, the page in a browser.

The store is the synthetic two-model study of tests/test_figures_report.py written through
``ResultsStore.write_unit`` (plus roles in ``algorithm_heads`` and successor/induction scores),
so every number the page shows can be checked against the store. The browser tests drive
headless Chromium through Playwright (``executable_path`` = the system's chromium when present,
else Playwright's own browser) and skip with the reason when neither starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from circuit_atlas.cli import app
from circuit_atlas.components.algorithm.fingerprints import greater_than_node_roles
from circuit_atlas.components.algorithm.roles import HeadScores
from circuit_atlas.errors import AnalysisError
from circuit_atlas.explorer import (
    circuit_key,
    explorer_data,
    head_roles,
    vendored_libraries,
    write_explorer,
)
from circuit_atlas.explorer.page import VENDORED
from circuit_atlas.report import write_report
from circuit_atlas.store import TABLES, ResultsStore
from tests.test_figures_report import MODELS, synthetic_frames

STEPS = (0, 64, 512, 4000, 143000)
NAME_MOVER = "a1.h2"  # tiny-a (2 layers): flagged name mover and S-inhibition in algorithm_heads


def _role_frames(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Add successor/induction scores (head 1 of layer 0 high) and IOI roles of one head."""
    units = frames["units"]
    rows, heads = [], []
    for unit in units.itertuples(index=False):
        n_layers, n_heads = MODELS[unit.model][1:]
        for layer in range(n_layers):
            for head in range(n_heads):
                keys = {"unit_id": unit.unit_id, "model": unit.model, "params": unit.params,
                        "step": unit.step, "tokens_seen": unit.tokens_seen, "layer": layer,
                        "head": head}  # fmt: skip
                rows.append({**keys, "component": "successor",
                             "score": 0.9 if (layer, head) == (0, 1) else 0.1})  # fmt: skip
                rows.append({**keys, "component": "induction",
                             "score": 0.8 if (layer, head) in ((0, 1), (1, 3)) else 0.05})
                node = f"a{layer}.h{head}"
                flagged = unit.model == "tiny-a" and node == NAME_MOVER
                heads.append({"unit_id": unit.unit_id, "model": unit.model, "step": unit.step,
                              "task": "ioi", "layer": layer, "head": head, "node": node,
                              "role": "name_mover" if flagged else None,
                              "is_name_mover": flagged, "is_copy_suppression": False,
                              "is_negative_name_mover": False,
                              "is_negative_copy_suppression": False, "is_s_inhibition": flagged,
                              "is_tertiary": False})  # fmt: skip
    frames = dict(frames)
    frames["component_scores"] = pd.concat([frames["component_scores"], pd.DataFrame(rows)],
                                           ignore_index=True)  # fmt: skip
    frames["algorithm_heads"] = pd.DataFrame(heads)
    return frames


def _write_store(root, frames: dict[str, pd.DataFrame]) -> ResultsStore:
    store = ResultsStore(root, create=True)
    for unit_id in frames["units"]["unit_id"]:
        tables = {}
        for name, schema in TABLES.items():
            if name not in frames:
                continue
            rows = frames[name][frames[name]["unit_id"] == unit_id].copy()
            for column in schema.names:
                if column not in rows.columns:
                    rows[column] = None
            tables[name] = rows[schema.names]
        assert store.write_unit(unit_id, tables)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ResultsStore:
    frames = _role_frames(synthetic_frames(steps=STEPS))
    return _write_store(tmp_path_factory.mktemp("explorer") / "results", frames)


@pytest.fixture(scope="module")
def data(store) -> dict:
    return explorer_data(store)


def _stored_circuit(store: ResultsStore, model: str, task: str, step: int) -> dict[str, float]:
    rows = store.query(
        f"SELECT edge, score FROM edges WHERE in_circuit AND model = '{model}' "
        f"AND task = '{task}' AND step = {int(step)}"
    )
    return dict(zip(rows["edge"], rows["score"].astype(np.float32), strict=True))


def _document_circuit(data: dict, model: str, task: str, step: int) -> dict[str, float]:
    entry = data["circuits"][circuit_key(model, task, step)]
    names = data["names"]
    return {names[p] + "->" + names[c]: np.float32(s)
            for p, c, s in zip(entry["p"], entry["c"], entry["s"], strict=True)}  # fmt: skip


# --- the embedded JSON -----------------------------------------------------------------------


def test_document_edges_equal_the_stored_circuits(store, data):
    circuits = store.table("circuits")
    assert len(data["circuits"]) == len(circuits) == 2 * len(STEPS) * 2
    for row in circuits.itertuples(index=False):
        stored = _stored_circuit(store, row.model, row.task, row.step)
        drawn = _document_circuit(data, row.model, row.task, row.step)
        assert drawn == stored  # names and float32 scores, exactly
        entry = data["circuits"][circuit_key(row.model, row.task, row.step)]
        assert entry["n_edges"] == row.n_edges == entry["drawn"] == len(stored)
        assert entry["n_nodes"] == row.n_nodes
    assert [m["name"] for m in data["models"]] == ["tiny-a", "tiny-b"]  # smallest first
    assert data["models"][1] | {} == {"name": "tiny-b", "params": MODELS["tiny-b"][0],
                                      "n_layers": 3, "n_heads": 4}  # fmt: skip
    assert [c["step"] for c in data["checkpoints"]["tiny-a"]] == list(STEPS)


def test_document_roles_equal_the_stored_tables(store, data):
    for key, entry in data["circuits"].items():
        model, task, _ = key.split("|")
        nodes = {data["names"][p] for p in entry["p"]} | {
            re.sub(r"<[qkv]>$", "", data["names"][c]) for c in entry["c"]}
        expected = {}
        for node in sorted(nodes):
            mine = []
            if model == "tiny-a" and node == NAME_MOVER:
                mine += ["name_mover", "s_inhibition"]
            if node == "a0.h1":  # successor 0.9 and induction 0.8: both above the means
                mine += ["successor", "induction"]
            if node == "a1.h3":
                mine += ["induction"]
            if mine:
                order = (["successor", "induction", "name_mover", "s_inhibition"]
                         if task == "greater-than" else
                         ["name_mover", "s_inhibition", "successor", "induction"])  # fmt: skip
                expected[node] = sorted(mine, key=order.index)
        assert entry["roles"] == expected, key
    assert {r["role"] for r in data["roles"]} <= {"name_mover", "s_inhibition", "successor",
                                                   "induction"}  # fmt: skip


def test_head_roles_follow_the_greater_than_fingerprint_rule():
    generator = torch.Generator().manual_seed(0)
    successor = torch.rand(3, 4, generator=generator)
    induction = torch.rand(3, 4, generator=generator)
    induction[0, 0] = float("nan")
    rows = [{"unit_id": "u", "component": name, "layer": layer, "head": head,
             "score": float(values[layer, head])}
            for name, values in (("successor", successor), ("induction", induction))
            for layer in range(3) for head in range(4)]  # fmt: skip
    roles = head_roles(pd.DataFrame(rows), pd.DataFrame())["u"]
    zeros = torch.zeros(3, 4)
    nodes = [f"a{layer}.h{head}" for layer in range(3) for head in range(4)]
    reference = greater_than_node_roles(
        HeadScores(copy=zeros, negative_copy=zeros, cspa=zeros, induction=induction,
                   duplicate_token=zeros, successor=successor), nodes)  # fmt: skip
    for node in nodes:
        assert (roles.get(node, ["other"])[0]) == reference[node], node


def test_cap_keeps_the_largest_edges_by_magnitude(store):
    capped = explorer_data(store, max_edges=3)
    row = store.table("circuits").sort_values("n_edges").iloc[-1]
    stored = _stored_circuit(store, row.model, row.task, row.step)
    drawn = _document_circuit(capped, row.model, row.task, row.step)
    top = sorted(stored, key=lambda e: -abs(float(stored[e])))[:3]
    assert sorted(drawn) == sorted(top)
    entry = capped["circuits"][circuit_key(row.model, row.task, row.step)]
    assert entry["drawn"] == 3 and entry["n_edges"] == row.n_edges > 3
    with pytest.raises(AnalysisError, match="max_edges must be a positive integer, got 0"):
        explorer_data(store, max_edges=0)
    with pytest.raises(AnalysisError, match="no circuit to explore"):
        explorer_data({"circuits": pd.DataFrame()})


def test_curves_equal_the_stored_series(store, data):
    series = data["series"]["tiny-b|ioi"]
    circuits = store.table("circuits")
    mine = circuits[(circuits["model"] == "tiny-b") & (circuits["task"] == "ioi")]
    mine = mine.sort_values("step")
    assert series["step"] == mine["step"].tolist()
    assert series["edges"] == mine["n_edges"].tolist()
    assert series["nodes"] == mine["n_nodes"].tolist()
    np.testing.assert_allclose(series["faithfulness"], mine["faithfulness"], rtol=1e-5)
    metrics = store.table("task_metrics").set_index(["model", "task", "step"])["clean_metric"]
    np.testing.assert_allclose(series["metric"],
                               [metrics[("tiny-b", "ioi", s)] for s in series["step"]], rtol=1e-5)
    assert series["jaccard"][0] is None and all(j is not None for j in series["jaccard"][1:])


# --- the page --------------------------------------------------------------------------------


def test_page_is_self_contained_and_embeds_the_document(store, data, tmp_path):
    out = write_explorer(store, tmp_path / "explorer.html")
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<img[^>]+src=\"http", text)
    for library in vendored_libraries():
        assert f"{library['name']} {library['version']} ({library['licence']})" in text
    payload = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>',
                        text, re.S).group(1)  # fmt: skip
    assert json.loads(payload) == json.loads(json.dumps(data))


def test_vendored_files_match_their_recorded_sha256():
    from importlib import resources

    folder = resources.files("circuit_atlas.explorer") / "vendor"
    recorded = {lib["file"]: lib for lib in vendored_libraries()}
    assert set(recorded) == set(VENDORED)
    for name, library in recorded.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert digest == library["sha256"], name
        assert (folder / library["licence_file"]).is_file()


def test_explore_command_and_report_link(store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "site" / "explorer.html"
    result = runner.invoke(app, ["explore", str(store.root), "-o", str(out), "--max-edges", "5"])
    assert result.exit_code == 0, result.output
    assert "explorer written to" in result.output and out.is_file()
    report = write_report({}, tmp_path / "site" / "report.html")  # empty tables: fast
    assert '<a href="explorer.html">' in report.read_text(encoding="utf-8")
    alone = write_report({}, tmp_path / "alone" / "report.html")
    assert "explorer.html" not in alone.read_text(encoding="utf-8")
    missing = runner.invoke(app, ["explore", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "error:" in missing.output


# --- in a browser ----------------------------------------------------------------------------


def _executable() -> str | None:
    for name in (os.environ.get("CIRCUIT_ATLAS_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome"):  # fmt: skip
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    manager = sync_api.sync_playwright().start()
    executable = _executable()
    try:
        launched = manager.chromium.launch(executable_path=executable, args=["--no-sandbox"])
    except Exception as exc:  # noqa: BLE001 - any failure to start a browser means skip
        manager.stop()
        pytest.skip(f"no headless Chromium could be started ({executable or 'playwright'}'s "
                    f"browser): {str(exc).splitlines()[0]}")  # fmt: skip
    yield launched
    launched.close()
    manager.stop()


def _open(browser, path, hash_: str = ""):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri() + hash_)
    page.wait_for_function("window.explorer && window.explorer.ready", timeout=30_000)
    return page, requests, errors


def _drawn(page) -> dict[str, float]:
    return {e["edge"]: np.float32(e["score"])
            for e in page.evaluate("window.explorer.drawnEdges()")}  # fmt: skip


def _state(page) -> dict:
    return page.evaluate("window.explorer.state")


def test_browser_slider_and_model_switch_draw_the_stored_circuits(browser, store, tmp_path):
    out = write_explorer(store, tmp_path / "explorer.html")
    page, requests, errors = _open(browser, out)
    state = _state(page)
    assert (state["model"], state["task"], state["step"]) == ("tiny-b", "ioi", STEPS[-1])
    assert _drawn(page) == _stored_circuit(store, "tiny-b", "ioi", STEPS[-1])
    page.focus("#step")
    page.keyboard.press("ArrowLeft")  # one checkpoint back
    page.keyboard.press("ArrowLeft")
    assert _state(page)["step"] == STEPS[-3]
    assert _drawn(page) == _stored_circuit(store, "tiny-b", "ioi", STEPS[-3])
    assert f"step {STEPS[-3]}" in page.inner_text("#status")
    marked = page.evaluate("window.explorer.marked()")
    assert {m["x"] for m in marked} == {STEPS[-3] * 2_097_152}
    page.eval_on_selector("#step", "el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
    assert _state(page)["step"] == STEPS[0]
    assert _drawn(page) == _stored_circuit(store, "tiny-b", "ioi", STEPS[0])
    page.keyboard.press("ArrowRight")
    page.select_option("#model", "tiny-a")
    state = _state(page)
    assert (state["model"], state["step"]) == ("tiny-a", STEPS[1])  # nearest tokens seen
    assert _drawn(page) == _stored_circuit(store, "tiny-a", "ioi", STEPS[1])
    nodes = {n["node"]: n for n in page.evaluate("window.explorer.drawnNodes()")}
    if NAME_MOVER in nodes:
        assert nodes[NAME_MOVER]["role"] == "name_mover"
    page.select_option("#task", "sva")
    assert _drawn(page) == _stored_circuit(store, "tiny-a", "sva", STEPS[1])
    assert "Not a faithful minimal circuit" in page.inner_text("#notice")  # sva undefined here
    shot = tmp_path / "explorer-tiny-a-sva.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert errors == [] and all(u.startswith("file:") for u in requests), (errors, requests)
    page.close()


def test_browser_compare_mode_shows_added_and_removed_edges(browser, store, tmp_path):
    out = write_explorer(store, tmp_path / "explorer.html")
    hash_ = f"#model=tiny-b&task=ioi&step={STEPS[-1]}&compare=checkpoint&ref={STEPS[1]}"
    page, _, errors = _open(browser, out, hash_)
    now = set(_stored_circuit(store, "tiny-b", "ioi", STEPS[-1]))
    before = set(_stored_circuit(store, "tiny-b", "ioi", STEPS[1]))
    status = {}
    for edge in page.evaluate("window.explorer.drawnEdges()"):
        status.setdefault(edge["status"], set()).add(edge["edge"])
    assert status.get("added", set()) == now - before
    assert status.get("removed", set()) == before - now
    assert status.get("kept", set()) == now & before
    assert f"+{len(now - before)} added, −{len(before - now)} removed" in page.inner_text(
        "#compare-summary")
    page.select_option("#compare", "model")
    other = set(_stored_circuit(store, "tiny-a", "ioi", STEPS[-1]))
    drawn = {e["edge"]: e["status"] for e in page.evaluate("window.explorer.drawnEdges()")}
    assert {e for e, s in drawn.items() if s == "removed"} == other - now
    shot = tmp_path / "explorer-compare.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert errors == []
    page.close()


def _large_frames(n_layers: int = 12, n_heads: int = 12, n_circuit: int = 5000):
    """One 160m-shaped checkpoint pair (12 × 12 heads) whose circuit exceeds the cap."""
    rng = np.random.default_rng(0)
    nodes = ["input"] + [f"a{l}.h{h}" for l in range(n_layers) for h in range(n_heads)] + [
        f"m{l}" for l in range(n_layers)]
    circuits, edges = [], []
    for step in (1000, 2000):
        unit = f"big-{step}"
        seen = set()
        while len(seen) < n_circuit:
            parent = nodes[rng.integers(len(nodes))]
            layer = rng.integers(n_layers)
            child = f"a{layer}.h{rng.integers(n_heads)}<{'qkv'[rng.integers(3)]}>"
            seen.add((parent, child))
        for parent, child in seen:
            edges.append({"unit_id": unit, "model": "big", "step": step, "task": "ioi",
                          "edge": f"{parent}->{child}", "parent": parent,
                          "child": child[:-3], "score": float(rng.normal()), "in_circuit": True})
        circuits.append({"unit_id": unit, "model": "big", "params": 162_322_944, "step": step,
                         "tokens_seen": step * 2_097_152, "task": "ioi", "n_edges": n_circuit,
                         "n_nodes": len(nodes), "faithfulness": 0.9, "threshold": 0.8})
    units = pd.DataFrame([{"unit_id": c["unit_id"], "model": "big", "step": c["step"],
                           "spec": json.dumps({"n_layers": n_layers, "n_heads": n_heads})}
                          for c in circuits])  # fmt: skip
    return {"circuits": pd.DataFrame(circuits), "edges": pd.DataFrame(edges), "units": units}


def test_browser_stays_responsive_for_a_160m_sized_circuit(browser, tmp_path):
    out = write_explorer(_large_frames(), tmp_path / "big.html")
    started = time.perf_counter()
    page, _, errors = _open(browser, out)
    opened = time.perf_counter() - started
    assert len(page.evaluate("window.explorer.drawnEdges()")) == 2000
    assert "more than the cap of 2000: the top 2000 by |score| are drawn" in page.inner_text(
        "#notice")
    page.focus("#step")
    started = time.perf_counter()
    page.keyboard.press("ArrowLeft")
    assert _state(page)["step"] == 1000
    redraw = time.perf_counter() - started
    print(f"160m-sized circuit: opened in {opened:.2f} s, slider redraw {redraw:.2f} s")
    assert redraw < 10.0 and errors == []
    shot = tmp_path / "explorer-160m.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    page.close()
