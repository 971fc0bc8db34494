"""Bad input gets a typed error naming the bad value, before any work, with nothing written.

Promise 4 of issue 17 (docs/guarantees.md). Each case runs one command through the CLI in
process (``circuit``, ``run`` or ``train``) and checks: exit code 2 (the CLI's typed-error exit,
not a traceback), a message that names the bad value, and that the command's output directory
was not created. The library-level tests of the same errors stay where they are
(tests/test_sources.py, test_tasks.py, test_study_config.py, test_search.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from circuit_atlas.cli import app
from tests.test_study_helpers import make_suite, write_study

runner = CliRunner()

PAIR = {"clean": "When Mary and John went to the store, John gave a drink to",
        "corrupted": "When Mary and John went to the store, Mary gave a drink to",
        "answer": " Mary", "wrong_answer": " John"}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory, pythia_tokenizer, data_dir):
    """A good checkpoint, broken copies of it, custom task files and study files."""
    from circuit_atlas.models.configs import save_random_checkpoint, tiny_config

    root = tmp_path_factory.mktemp("bad-input")
    good = save_random_checkpoint(root / "good" / "step100", tiny_config(), seed=0,
                                  tokenizer=pythia_tokenizer)

    def copy(name):
        return Path(shutil.copytree(good, root / name))

    weights = copy("truncated") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (copy("foreign") / "model.safetensors").write_bytes(b"<html>not found</html>" * 50)
    bert = copy("bert")
    config = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    pickled = copy("pickled")
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    (root / "no-config").mkdir()
    (root / "a-file").write_text("not a directory\n")

    def jsonl(name, rows=(), raw=None):
        path = root / name
        path.write_bytes(raw if raw is not None
                         else "".join(json.dumps(r) + "\n" for r in rows).encode())
        return path

    jsonl("missing-column.jsonl", [{k: v for k, v in PAIR.items() if k != "wrong_answer"}])
    (root / "missing-column.csv").write_text("clean,corrupted,answer\na,b,c\n")
    jsonl("multi-token.jsonl", [{**PAIR, "answer": " Maryanne Smithsonian"}])
    jsonl("lengths.jsonl", [{**PAIR, "corrupted": PAIR["corrupted"].replace("the", "the big")}])
    jsonl("empty.jsonl", raw=b"")
    jsonl("latin1.jsonl", raw=json.dumps(PAIR).replace("Mary", "M\u00e4ry").encode("latin-1"))
    jsonl("same-answer.jsonl", [{**PAIR, "wrong_answer": " Mary"}])
    jsonl("not-object.jsonl", raw=(json.dumps(PAIR) + "\n[1, 2]\n").encode())

    make_suite(root)
    study = write_study(root, data_dir).read_text()
    assert 'schedule = "all"' in study and "ig_steps = 3" in study and "threshold = 0.8" in study
    variants = {
        "unknown-key.toml": study.replace("ig_steps", "ig_stepz"),
        "wrong-type.toml": study.replace("n = 6\n", 'n = "six"\n', 1),
        "no-tasks.toml": study.split("[[tasks]]")[0].replace("analyses", "tasks = []\nanalyses")
        + "[attribution]" + study.split("[attribution]")[1],
        "negative-step.toml": study.replace('schedule = "all"', "schedule = [-10, 10]"),
        "not-a-step.toml": study.replace('schedule = "all"', "schedule = [15]"),
        "unknown-task.toml": study.replace('"gender-pronoun"', '"gender-pronon"'),
        "toml-syntax.toml": study.replace("ig_steps = 3", "ig_steps = = 3"),
        "unknown-pythia.toml": study.replace('kind = "suite"\npath = "suite"',
                                             'kind = "pythia"\nsizes = ["15m"]'),
        "missing-suite.toml": study.replace('path = "suite"', 'path = "no-suite"'),
        "threshold.toml": study.replace("threshold = 0.8", "threshold = 1.5"),
        "ig-steps.toml": study.replace("ig_steps = 3", "ig_steps = 0"),
        "cuda.toml": study.replace('device = "cpu"', 'device = "cuda"'),
        "dtype.toml": study.replace('device = "cpu"', 'device = "cpu"\nprecision = "float8"'),
    }
    for name, text in variants.items():
        assert text != study, name
        (root / name).write_text(text)
    (root / "yaml-syntax.yaml").write_text("name: x\nmodels:\n  - kind: suite\n   bad: [\n")
    (root / "study.toml").write_text(study)
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "brown.txt").write_bytes((data_dir / "corpus" / "brown.txt").read_bytes()[:20_000])
    return root


CIRCUIT = ["circuit", "--task", "gender-pronoun", "--n", "4", "--ig-steps", "1",
           "--max-edges", "60", "--batch-size", "4", "--device", "cpu"]  # fmt: skip
GOOD = ["--model-path", "{root}/good/step100"]


def custom(name):
    return [*GOOD, "--task", "custom", "--custom-path", f"{{root}}/{name}"]


# (id, argv after CIRCUIT, substrings the message must contain)
CIRCUIT_CASES = [
    ("unknown-model", ["--model", "pythia-15m"], ["unknown Pythia model 'pythia-15m'",
                                                  "pythia-70m"]),
    ("not-a-checkpoint", ["--model", "pythia-70m", "--step", "1500"],
     ["step 1500 is not a checkpoint of pythia-70m", "nearest valid steps: 1000, 2000"]),
    ("missing-path", ["--model-path", "{root}/nowhere"], ["'{root}/nowhere' does not exist"]),
    ("no-config", ["--model-path", "{root}/no-config"], ["'{root}/no-config' has no config.json"]),
    ("truncated-weights", ["--model-path", "{root}/truncated"],
     ["'{root}/truncated/model.safetensors' is truncated: tensor 'gpt_neox.", "the file has"]),
    ("foreign-weights", ["--model-path", "{root}/foreign"],
     ["'{root}/foreign/model.safetensors' is truncated or not a safetensors file"]),
    ("unsupported-architecture", ["--model-path", "{root}/bert"],
     ["'{root}/bert'", "model_type 'bert' has no architecture adapter", "'gpt_neox'"]),
    ("pickled-weights", ["--model-path", "{root}/pickled"],
     ["'{root}/pickled' has only pickled weights (pytorch_model.bin)", "--allow-pickle"]),
    ("custom-missing-field", custom("missing-column.jsonl"),
     ["missing-column.jsonl' row 1: missing field 'wrong_answer'"]),
    ("custom-missing-column", custom("missing-column.csv"),
     ["missing-column.csv': missing column(s) ['wrong_answer']"]),
    ("custom-multi-token", custom("multi-token.jsonl"),
     ["row 1, field 'answer': ' Maryanne Smithsonian' is not a single known token"]),
    ("custom-token-lengths", custom("lengths.jsonl"),
     ["lengths.jsonl' row 1", "clean has 14 tokens but corrupted has 15"]),
    ("custom-empty", custom("empty.jsonl"), ["empty.jsonl': no rows"]),
    ("custom-not-utf8", custom("latin1.jsonl"),
     ["latin1.jsonl' line 1: byte 0xe4 (offset 17) is not UTF-8"]),
    ("custom-answer-is-wrong-answer", custom("same-answer.jsonl"),
     ["same-answer.jsonl' row 1, fields 'answer'/'wrong_answer': both are the token ' Mary'"]),
    ("custom-line-not-object", custom("not-object.jsonl"),
     ["not-object.jsonl' row 2 (line 2): expected a JSON object, got list"]),
    ("ig-steps-0", [*GOOD, "--ig-steps", "0"], ["ig_steps must be an integer >= 1, got 0"]),
    ("threshold-0", [*GOOD, "--threshold", "0"], ["threshold must be a faithfulness in (0, 1], "
                                                  "got 0.0"]),
    ("threshold-above-1", [*GOOD, "--threshold", "1.5"], ["in (0, 1], got 1.5"]),
    ("unknown-dtype", [*GOOD, "--dtype", "float8"], ["unknown dtype 'float8'", "bfloat16"]),
    ("unknown-device", [*GOOD, "--device", "tpu:9"], ["unknown device 'tpu:9'"]),
]
if not torch.cuda.is_available():
    CIRCUIT_CASES.append(("cuda-without-cuda", [*GOOD, "--device", "cuda"],
                          ["device 'cuda' requested but CUDA is not available"]))


def _fill(items, root):
    return [str(item).replace("{root}", str(root)) for item in items]


def assert_refused(result, expected, root):
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error: " in result.output and "Traceback" not in result.output
    message = " ".join(result.output.split())  # undo the terminal's line wrapping
    for text in _fill(expected, root):
        assert text in message, message


@pytest.mark.parametrize(("case", "extra", "expected"), CIRCUIT_CASES,
                         ids=[c[0] for c in CIRCUIT_CASES])
def test_circuit_refuses(files, data_dir, case, extra, expected):
    out = files / "out" / case
    result = runner.invoke(app, [*CIRCUIT, "--data-dir", str(data_dir), "--out", str(out),
                                 *_fill(extra, files)])
    assert_refused(result, expected, files)
    assert not out.exists()


def test_pickled_weights_load_with_allow_pickle(files, data_dir):
    out = files / "out" / "allowed-pickle"
    result = runner.invoke(app, [*CIRCUIT, "--data-dir", str(data_dir), "--out", str(out),
                                 "--model-path", str(files / "pickled"), "--allow-pickle"])
    assert result.exit_code == 0, result.output
    assert out.is_dir()


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_circuit_output_that_is_a_file(files, data_dir, where):
    out = files / "a-file" if where == "file" else files / "a-file" / "sub"
    result = runner.invoke(app, [*CIRCUIT, "--data-dir", str(data_dir), "--out", str(out),
                                 *_fill(GOOD, files)])
    assert_refused(result, [f"--out '{out}'"], files)
    assert (files / "a-file").read_text() == "not a directory\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no unwritable dir")
def test_output_not_writable(files, data_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = runner.invoke(app, [*CIRCUIT, "--data-dir", str(data_dir), "--out",
                                 str(locked / "out"), *_fill(GOOD, files)])
    assert_refused(result, [f"'{locked / 'out'}' is not writable"], files)
    result = runner.invoke(app, ["run", str(files / "study.toml"), "-r", str(locked / "r")])
    assert_refused(result, [f"'{locked / 'r'}' is not writable"], files)


def test_output_not_writable_by_this_user(files, data_dir, tmp_path, monkeypatch):
    """The same refusal where permissions cannot be used (root): os.access says no."""
    import circuit_atlas.paths

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(circuit_atlas.paths.os, "access",
                        lambda path, mode: Path(path) != locked and real(path, mode))
    result = runner.invoke(app, [*CIRCUIT, "--data-dir", str(data_dir), "--out",
                                 str(locked / "out"), *_fill(GOOD, files)])
    assert_refused(result, [f"'{locked / 'out'}' is not writable: no write permission on "
                            f"'{locked}'"], files)
    result = runner.invoke(app, ["run", str(files / "study.toml"), "-r", str(locked / "r")])
    assert_refused(result, [f"results directory '{locked / 'r'}' is not writable"], files)
    assert list(locked.iterdir()) == []


# (study file, substrings the message must contain)
STUDY_CASES = [
    ("unknown-key.toml", ["unknown-key.toml:20: attribution.ig_stepz: Extra inputs"]),
    ("wrong-type.toml", ["wrong-type.toml:12: tasks[0].n: Input should be a valid integer",
                         "'six'"]),
    ("no-tasks.toml", ["no-tasks.toml:3: tasks: List should have at least 1 item"]),
    ("negative-step.toml", ["negative-step.toml:8: models[0].schedule: step -10 is not a "
                            "checkpoint of suite tiny size a"]),
    ("not-a-step.toml", ["step 15 is not a checkpoint of suite tiny size a; nearest valid "
                         "steps: 10, 20"]),
    ("unknown-task.toml", ["unknown-task.toml:15: tasks[1].name: unknown task 'gender-pronon'"]),
    ("toml-syntax.toml", ["toml-syntax.toml: invalid TOML", "line 20"]),
    ("yaml-syntax.yaml", ["yaml-syntax.yaml: invalid YAML at line 4, column 4: while parsing "
                          "a block collection, expected <block end>"]),
    ("unknown-pythia.toml", ["unknown Pythia model 'pythia-15m'"]),
    ("missing-suite.toml", ["missing-suite.toml:7: models[0].path: suite directory",
                            "no-suite' does not exist"]),
    ("threshold.toml", ["threshold.toml:23: circuit.threshold: Input should be less than or "
                        "equal to 1 (got 1.5)"]),
    ("ig-steps.toml", ["ig-steps.toml:20: attribution.ig_steps: Input should be greater than 0 "
                       "(got 0)"]),
    ("dtype.toml", ["run.precision: Input should be 'float32', 'bfloat16' or 'float16'",
                    "'float8'"]),
]
if not torch.cuda.is_available():
    STUDY_CASES.append(("cuda.toml", ["device 'cuda' requested but CUDA is not available"]))


@pytest.mark.parametrize(("name", "expected"), STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
def test_run_refuses_study(files, name, expected):
    results = files / "results" / name
    result = runner.invoke(app, ["run", str(files / name), "-r", str(results), "--no-progress"])
    assert_refused(result, expected, files)
    assert not results.exists()


def test_run_results_path_that_is_a_file(files):
    result = runner.invoke(app, ["run", str(files / "study.toml"), "-r", str(files / "a-file")])
    assert_refused(result, [f"'{files / 'a-file'}' is a file, not a directory"], files)
    assert (files / "a-file").read_text() == "not a directory\n"


TRAIN = ["train", "--steps", "2", "--n-even", "1", "--batch-size", "2", "--seq-len", "16",
         "--vocab-size", "600", "--no-progress"]  # fmt: skip
TRAIN_CASES = [
    ("unknown-size", ["--sizes", "huge"], ["unknown model size 'huge'", "micro"]),
    ("missing-corpus", ["--corpus", "{root}/no-corpus"], ["{root}/no-corpus", "does not exist"]),
    ("out-is-a-file", ["--out", "{root}/a-file"], ["suite directory '{root}/a-file' is a file"]),
]


@pytest.mark.parametrize(("case", "extra", "expected"), TRAIN_CASES,
                         ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses(files, data_dir, case, extra, expected):
    out = files / "suites" / case
    args = [*TRAIN, "--data-dir", str(data_dir), "--corpus", str(files / "corpus"),
            "--sizes", "micro", "--out", str(out), *_fill(extra, files)]
    result = runner.invoke(app, args)
    assert_refused(result, expected, files)
    assert not out.exists()
    assert (files / "a-file").read_text() == "not a directory\n"


@pytest.fixture(scope="module")
def store(files):
    from circuit_atlas.store import ResultsStore

    return ResultsStore(files / "empty-store", create=True).root


@pytest.mark.parametrize(("command", "output", "expected"), [
    ("report", "{root}/a-file/report.html", "the directory of --output '{root}/a-file' is a file"),
    ("report", "{root}/corpus", "--output '{root}/corpus' is a directory"),
    ("export", "{root}/a-file", "--output '{root}/a-file' is a file"),
])  # fmt: skip
def test_report_and_export_outputs(files, store, command, output, expected):
    before = sorted(p.name for p in store.rglob("*"))
    result = runner.invoke(app, [command, str(store), "-o", _fill([output], files)[0]])
    assert_refused(result, [expected], files)
    assert sorted(p.name for p in store.rglob("*")) == before

