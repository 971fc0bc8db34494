"""``circuit-atlas circuit`` in process, on a local random-init GPT-NeoX directory."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from circuit_atlas.circuit_cli import EAP_JSON_FILE, MIB_JSON_FILE
from circuit_atlas.cli import app
from circuit_atlas.graph import Graph
from circuit_atlas.result import CircuitResult

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, pythia_tokenizer):
    from circuit_atlas.models.configs import save_random_checkpoint, tiny_config

    return save_random_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "step100", tiny_config(), seed=0,
        tokenizer=pythia_tokenizer,
    )


def test_circuit_command_writes_a_loadable_result(checkpoint, data_dir, tmp_path):
    args = ["circuit", "--model-path", str(checkpoint), "--task", "gender-pronoun",
            "--out", str(tmp_path), "--data-dir", str(data_dir), "--n", "8", "--ig-steps", "2",
            "--batch-size", "8", "--max-edges", "150", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "clean metric" in out and "corrupted metric" in out
    assert "faithfulness m(C)/m(M)" in out and "edges," in out and "nodes" in out
    target = tmp_path / f"{checkpoint.parent.name}-step100-gender-pronoun"
    assert f"result written to {target}" in out.replace("\n", "")
    result = CircuitResult.load(target)
    assert result.task == "gender-pronoun" and result.metric_kind == "logit_diff"
    assert result.settings["n_examples"] == 8 and result.settings["ig_steps"] == 2
    assert result.model["kind"] in {"local", "suite"}
    shown = "undefined" if result.faithfulness is None else f"{result.faithfulness:.4f}"
    assert f"faithfulness m(C)/m(M)                {shown}" in out
    assert f"clean metric      {result.clean_metric:.4f}" in out
    eap = json.loads((target / EAP_JSON_FILE).read_text())
    assert eap["cfg"]["n_layers"] == 2 and len(eap["edges"]) == len(result.edge_names)
    mib = json.loads((target / MIB_JSON_FILE).read_text())
    assert [p["fraction"] for p in mib["curves"]["signed"]][-1] == 1.0
    assert not mib["curves"]["signed"][0]["absolute"] and mib["curves"]["absolute"][0]["absolute"]
    for key, label in (("cpr", "CPR (signed scores)  "), ("cmd", "CMD (|scores|)       ")):
        shown = "undefined" if mib[key] is None else f"{mib[key]:.4f}"
        assert f"MIB {label}{shown}" in out
    res = runner.invoke(app, [*args, "--no-mib", "--out", str(tmp_path / "no-mib")])
    assert res.exit_code == 0, res.output
    assert "MIB CPR" not in res.output
    assert not (tmp_path / "no-mib" / target.name / MIB_JSON_FILE).exists()
    # export-mib: MIB's submission folder <task>_<model>/importances.json
    res = runner.invoke(app, ["export-mib", str(target), "-o", str(tmp_path / "sub"),
                              "--model-name", "tiny"])
    assert res.exit_code == 0, res.output
    sub = json.loads((tmp_path / "sub" / "gender-pronoun_tiny" / "importances.json").read_text())
    assert sub["cfg"] == {"n_layers": 2, "n_heads": eap["cfg"]["n_heads"],
                          "parallel_attn_mlp": True, "d_model": eap["cfg"]["d_model"]}
    assert {k: v["score"] for k, v in sub["edges"].items()} == pytest.approx(
        {k: v["score"] for k, v in eap["edges"].items()})
    bad = runner.invoke(app, ["export-mib", str(target), "-o", str(tmp_path / "sub2"),
                              "--model-name", "my_model"])
    assert bad.exit_code == 2 and "model name 'my_model'" in bad.output


def test_custom_task_and_paper_search(checkpoint, data_dir, tmp_path):
    rows = [
        {"clean": "When Mary and John went to the store, John gave a drink to",
         "corrupted": "When Mary and John went to the store, Mary gave a drink to",
         "answer": " Mary", "wrong_answer": " John"},
        {"clean": "When Anna and Paul went to the park, Paul gave a book to",
         "corrupted": "When Anna and Paul went to the park, Anna gave a book to",
         "answer": " Anna", "wrong_answer": " Paul"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    args = ["circuit", "--model-path", str(checkpoint), "--task", "custom",
            "--custom-path", str(path), "--out", str(tmp_path / "out"), "--ig-steps", "1",
            "--search", "paper", "--max-edges", "60", "--data-dir", str(data_dir)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "task custom (2 examples" in res.output and "paper search" in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --model NAME and --model-path DIR"),
        (["--model", "pythia-70m", "--model-path", "."], "exactly one of --model"),
        (["--model-path", "{ckpt}", "--task", "no-such-task"], "unknown task 'no-such-task'"),
        (["--model-path", "{ckpt}", "--search", "smart"], "unknown search 'smart'"),
    ],
)
def test_errors_exit_2_and_name_the_value(checkpoint, data_dir, tmp_path, extra, message):
    extra = [a.replace("{ckpt}", str(checkpoint)) for a in extra]
    task = [] if "--task" in extra else ["--task", "sva"]
    args = ["circuit", *task, "--out", str(tmp_path), "--data-dir", str(data_dir),
            "--n", "4", *extra]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "olmo"])
def test_circuit_command_on_other_architectures(arch, pythia_tokenizer, data_dir, tmp_path):
    """``--model-path`` on a local random GPT-2 / Llama / Qwen2 / OLMo directory (issue 13)."""
    from tests.tiny import arch_model

    hf = arch_model(arch, layers=2, heads=4, d_model=32, vocab=50_304, scale=1.0,
                    dtype=torch.float32)  # fmt: skip
    ckpt = tmp_path / arch
    hf.save_pretrained(ckpt)
    pythia_tokenizer.save_pretrained(ckpt)
    args = ["circuit", "--model-path", str(ckpt), "--task", "gender-pronoun",
            "--out", str(tmp_path / "out"), "--data-dir", str(data_dir), "--n", "4",
            "--ig-steps", "2", "--batch-size", "4", "--max-edges", "60", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    (target,) = (tmp_path / "out").iterdir()
    result = CircuitResult.load(target)
    assert len(result.edge_names) == Graph(2, 4, parallel_residual=False).n_edges
    assert "a0.h0->m0" in result.edge_names  # sequential residual: heads feed their own MLP
    assert result.model["kind"] == "local"
