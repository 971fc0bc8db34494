"""Checkpoint integrity: weights fingerprints, duplicated checkpoints, hub hashes, the pickle guard.

Everything is local: tiny random checkpoints written with safetensors or ``torch.save``, a local
suite with one step directory copied onto another, and a hub cache in the hub's own layout
(``blobs/<sha256>`` with snapshot symlinks) read with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from circuit_atlas.analyses import identical_weights
from circuit_atlas.cli import app
from circuit_atlas.errors import (
    AnalysisError,
    CheckpointIntegrityError,
    PickledCheckpointError,
)
from circuit_atlas.models import load_model, random_hf_model, save_random_checkpoint, tiny_config
from circuit_atlas.models.integrity import (
    WeightFiles,
    fingerprint_files,
    fingerprint_state_dict,
    weight_files,
)
from circuit_atlas.store import ResultsStore
from circuit_atlas.study.load import load_study
from circuit_atlas.study.status import study_status
from circuit_atlas.study.units import plan_units

runner = CliRunner()
NO_TOKENIZER = dict(device="cpu", tokenizer=False)


@pytest.fixture(autouse=True)
def _no_hub_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)


def _fingerprint(directory: Path) -> str:
    return fingerprint_files(weight_files(directory))


def _pickle_checkpoint(directory: Path, seed: int, name: str = "pytorch_model.bin") -> dict:
    """A HF directory whose only weights are a ``torch.save`` pickle; returns the state dict."""
    model = random_hf_model(tiny_config(), seed)
    directory.mkdir(parents=True)
    model.config.save_pretrained(directory)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, directory / name)
    return state


# --- the fingerprint -------------------------------------------------------------------------


def test_fingerprint_is_stable_across_reloads_and_copies(tmp_path):
    save_random_checkpoint(tmp_path / "a", tiny_config(), seed=1)
    first = load_model(path=tmp_path / "a", **NO_TOKENIZER).source["weights_fingerprint"]
    again = load_model(path=tmp_path / "a", **NO_TOKENIZER).source["weights_fingerprint"]
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    copied = load_model(path=tmp_path / "copy", **NO_TOKENIZER).source["weights_fingerprint"]
    assert len(first) == 64 and first == again == copied
    save_random_checkpoint(tmp_path / "b", tiny_config(), seed=2)
    assert _fingerprint(tmp_path / "b") != first


def test_fingerprint_changes_when_one_tensor_changes(tmp_path):
    save_random_checkpoint(tmp_path / "a", tiny_config(), seed=1)
    tensors = load_file(tmp_path / "a" / "model.safetensors")
    reference = _fingerprint(tmp_path / "a")
    name = "gpt_neox.layers.1.mlp.dense_4h_to_h.bias"
    for change in ("value", "dtype", "name"):
        edited = dict(tensors)
        if change == "value":
            edited[name] = edited[name].clone()
            edited[name][3] += 1e-3  # one element of one tensor
        elif change == "dtype":  # the same bytes read as another dtype
            edited[name] = edited[name].view(torch.int32)
        else:
            edited[name + "_renamed"] = edited.pop(name)
        target = tmp_path / change
        shutil.copytree(tmp_path / "a", target)
        save_file(edited, target / "model.safetensors", metadata={"format": "pt"})
        assert _fingerprint(target) != reference, change


def test_fingerprint_ignores_layout_and_matches_the_in_memory_reference(tmp_path):
    """Streaming from files (the fast path) equals hashing the tensors in memory (the reference),
    whatever the tensor order, the metadata and the sharding."""
    tensors = load_file(save_random_checkpoint(tmp_path / "a", tiny_config(), 4)
                        / "model.safetensors")  # fmt: skip
    expected = fingerprint_state_dict(tensors)
    assert _fingerprint(tmp_path / "a") == expected
    names = sorted(tensors, reverse=True)
    (tmp_path / "shards").mkdir()
    halves = {"part-1.safetensors": names[::2], "part-2.safetensors": names[1::2]}
    for file, keys in halves.items():
        save_file({k: tensors[k] for k in keys}, tmp_path / "shards" / file,
                  metadata={"written_by": "another tool"})  # fmt: skip
    index = {"metadata": {}, "weight_map": {k: f for f, keys in halves.items() for k in keys}}
    (tmp_path / "shards" / "model.safetensors.index.json").write_text(json.dumps(index))
    shards = weight_files(tmp_path / "shards")
    assert shards.format == "safetensors" and len(shards.files) == 2
    assert fingerprint_files(shards) == expected
    bf16 = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    save_file(bf16, tmp_path / "bf16.safetensors")
    bf16_files = WeightFiles("safetensors", (tmp_path / "bf16.safetensors",))
    assert fingerprint_files(bf16_files) == fingerprint_state_dict(bf16) != expected


def test_random_models_are_fingerprinted_from_their_state_dict():
    a = load_model(config=tiny_config(), seed=3, **NO_TOKENIZER).source["weights_fingerprint"]
    b = load_model(config=tiny_config(), seed=3, **NO_TOKENIZER).source["weights_fingerprint"]
    c = load_model(config=tiny_config(), seed=4, **NO_TOKENIZER).source["weights_fingerprint"]
    assert a == b != c
    assert a == fingerprint_state_dict(random_hf_model(tiny_config(), 3).state_dict())


# --- the pickle guard ------------------------------------------------------------------------


def test_pickle_only_checkpoint_is_refused_unless_allowed(tmp_path):
    state = _pickle_checkpoint(tmp_path / "bin", seed=5)
    with pytest.raises(PickledCheckpointError,
                       match=r"bin' has only pickled weights \(pytorch_model.bin\).*arbitrary "
                             r"code.*allow_pickle=True.*--allow-pickle") as info:  # fmt: skip
        load_model(path=tmp_path / "bin", **NO_TOKENIZER)
    assert info.value.files == ("pytorch_model.bin",)
    loaded = load_model(path=tmp_path / "bin", allow_pickle=True, **NO_TOKENIZER)
    reference = random_hf_model(tiny_config(), 5)
    torch.testing.assert_close(loaded.W_E, reference.gpt_neox.embed_in.weight, rtol=0, atol=0)
    # a pickle and the same tensors in safetensors have one fingerprint
    assert loaded.source["weights_fingerprint"] == fingerprint_state_dict(state)

    _pickle_checkpoint(tmp_path / "pt", seed=5, name="weights.pt")
    with pytest.raises(PickledCheckpointError, match=r"\(weights.pt\)"):
        load_model(path=tmp_path / "pt", **NO_TOKENIZER)


def test_safetensors_win_over_a_pickle_next_to_them(tmp_path):
    directory = save_random_checkpoint(tmp_path / "both", tiny_config(), seed=6)
    torch.save({"not": torch.zeros(1)}, directory / "pytorch_model.bin")
    loaded = load_model(path=directory, **NO_TOKENIZER)  # no opt-in needed
    assert loaded.source["weights_fingerprint"] == _fingerprint(directory)


def test_circuit_command_refuses_a_pickle_without_allow_pickle(tmp_path):
    _pickle_checkpoint(tmp_path / "bin", seed=5)
    args = ["circuit", "--task", "no-such-task", "--out", str(tmp_path / "out"),
            "--model-path", str(tmp_path / "bin"), "--device", "cpu"]  # fmt: skip
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "only pickled weights" in refused.output
    allowed = runner.invoke(app, [*args, "--allow-pickle"])  # loads, then fails on the task
    assert allowed.exit_code == 2 and "pickled" not in allowed.output
    # past the weights: it fails later, on the task (or, without the data registry's Pythia
    # tokenizer on this machine, on the missing tokenizer), never on the pickle guard
    assert "no-such-task" in allowed.output or "has no tokenizer" in allowed.output


def test_study_allow_pickle_reaches_every_unit_but_not_the_unit_id(tmp_path):
    _pickle_checkpoint(tmp_path / "bin", seed=5)
    text = textwrap.dedent("""\
        name = "pickles"
        [[models]]
        kind = "local"
        name = "bin"
        checkpoints = [{path = "bin", step = 1}]
        [[tasks]]
        name = "ioi"
        [run]
        allow_pickle = ALLOW
        """)
    ids = {}
    for allow in ("false", "true"):
        path = tmp_path / f"{allow}.toml"
        path.write_text(text.replace("ALLOW", allow))
        (unit,) = plan_units(load_study(path))
        assert unit.execution.allow_pickle is (allow == "true")
        ids[allow] = unit.unit_id
        (forced,) = plan_units(load_study(path), allow_pickle=True)  # the --allow-pickle flag
        assert forced.execution.allow_pickle is True
    assert ids["false"] == ids["true"]


# --- the hub cache's sha256 ------------------------------------------------------------------


def _hub_snapshot(cache: Path, repo: str, revision: str, source: Path) -> Path:
    """Put a checkpoint directory into the hub cache as the hub does: blobs named by their hash
    (sha256 for LFS files, git's SHA-1 otherwise) and snapshot symlinks to them."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    commit = hashlib.sha1(revision.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        data = file.read_bytes()
        lfs = file.suffix in (".safetensors", ".bin")
        etag = (hashlib.sha256(data).hexdigest() if lfs else
                hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())  # fmt: skip
        (repo_dir / "blobs" / etag).write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", etag))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    return snapshot


def test_hub_file_is_checked_against_the_hubs_sha256(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    local = save_random_checkpoint(tmp_path / "ckpt", tiny_config(), seed=7)
    snapshot = _hub_snapshot(cache, "EleutherAI/pythia-70m", "step1000", local)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    loaded = load_model("pythia-70m", step=1000, **NO_TOKENIZER)
    assert loaded.source["weights_fingerprint"] == _fingerprint(local)

    blob = Path(os.path.realpath(snapshot / "model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the last tensor: still a loadable safetensors file
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError,
                       match=rf"model.safetensors' is corrupted: the hub records sha256 "
                             rf"{blob.name}, the file has {hashlib.sha256(data).hexdigest()}"):
        load_model("pythia-70m", step=1000, **NO_TOKENIZER)


def test_pickle_only_hub_revision_is_refused_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    _pickle_checkpoint(tmp_path / "bin", seed=8)
    _hub_snapshot(cache, "EleutherAI/pythia-70m", "step2000", tmp_path / "bin")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(PickledCheckpointError,
                       match=r"EleutherAI/pythia-70m@step2000 has only pickled weights"):
        load_model("pythia-70m", step=2000, **NO_TOKENIZER)
    loaded = load_model("pythia-70m", step=2000, allow_pickle=True, **NO_TOKENIZER)
    assert len(loaded.source["weights_fingerprint"]) == 64


# --- identical weights across units ----------------------------------------------------------


def _units(*rows: tuple[str, str, int | None, str | None]) -> pd.DataFrame:
    return pd.DataFrame([{"unit_id": u, "model": m, "step": s, "path": None,
                          "weights_fingerprint": f} for u, m, s, f in rows])  # fmt: skip


def test_identical_weights_groups_distinct_checkpoints_only():
    units = _units(("u1", "pythia-2.8b", 1000, "aa"), ("u2", "pythia-2.8b", 2000, "bb"),
                   ("u3", "pythia-2.8b", 3000, "bb"), ("u4", "pythia-2.8b", 3000, "bb"),
                   ("u5", "pythia-70m", 1000, "cc"), ("u6", "pythia-70m-seed1", 1000, "cc"),
                   ("u7", "pythia-70m", 2000, "dd"), ("u8", "pythia-70m", 2000, "dd"),
                   ("u9", "pythia-70m", 4000, None), ("u10", "pythia-70m", 5000, None),
                   ("u13", "m", 3, "ee"), ("u11", "m", 1, "ee"), ("u12", "m", 2, "ee"))
    found = identical_weights(units)
    assert found["message"].tolist() == [
        "steps 1, 2 and 3 of m have identical weights (fingerprint ee)",
        "steps 2000 and 3000 of pythia-2.8b have identical weights (fingerprint bb)",
        "pythia-70m@1000 and pythia-70m-seed1@1000 have identical weights (fingerprint cc)",
    ]  # u7/u8: one checkpoint analysed twice; u9/u10: no fingerprint (older units)
    assert found["unit_ids"].tolist() == ["u11, u12, u13", "u2, u3, u4", "u5, u6"]
    assert found["n_checkpoints"].tolist() == [3, 2, 2]
    assert identical_weights(units[units["weights_fingerprint"] != "bb"]).shape[0] == 2
    assert identical_weights(units.drop(columns="weights_fingerprint")).empty  # an older store
    with pytest.raises(AnalysisError, match=r"needs the units columns \['step'\]"):
        identical_weights(units.drop(columns="step"))


STUDY = """\
name = "dup"
data_dir = "{data_dir}"
analyses = ["behaviour"]

[[models]]
kind = "suite"
path = "suite"

[[tasks]]
name = "ioi"
n = 4

[run]
device = "cpu"
batch_size = 4
threads = 1
"""


def test_a_copied_step_directory_is_flagged_by_status_and_the_report(tmp_path, data_dir):
    suite = tmp_path / "suite"
    for step in (0, 10, 20):
        save_random_checkpoint(suite / "a" / f"step{step}", tiny_config(), seed=step)
    shutil.copytree(suite / "a" / "step10", suite / "a" / "step30")  # the planted duplicate
    (suite / "suite.json").write_text(json.dumps({"name": "tiny", "tokens_per_step": 1000}))
    (tmp_path / "study.toml").write_text(STUDY.format(data_dir=data_dir))
    results = tmp_path / "results"
    done = runner.invoke(app, ["run", str(tmp_path / "study.toml"), "-r", str(results),
                               "--no-progress"])  # fmt: skip
    assert done.exit_code == 0, done.output

    units = ResultsStore(results).table("units").sort_values("step")
    fingerprints = dict(zip(units["step"], units["weights_fingerprint"], strict=True))
    assert fingerprints[10] == fingerprints[30]
    assert len({fingerprints[0], fingerprints[10], fingerprints[20]}) == 3

    status = study_status(ResultsStore(results))
    assert [g["checkpoints"] for g in status.identical_weights] == ["tiny-a@10, tiny-a@30"]
    message = "steps 10 and 30 of tiny-a have identical weights"
    shown = runner.invoke(app, ["status", str(results)])
    assert shown.exit_code == 0 and f"warning: {message}" in shown.output

    report = runner.invoke(app, ["report", str(results), "-o", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="integrity"' in html and message in html
    assert "1 group(s) of checkpoints hold identical weights" in html

    shutil.rmtree(suite / "a" / "step30")  # without the copy nothing is flagged
    clean = tmp_path / "clean"
    assert runner.invoke(app, ["run", str(tmp_path / "study.toml"), "-r", str(clean),
                               "--no-progress"]).exit_code == 0  # fmt: skip
    assert study_status(ResultsStore(clean)).identical_weights == []
    assert "warning:" not in runner.invoke(app, ["status", str(clean)]).output
    runner.invoke(app, ["report", str(clean), "-o", str(tmp_path / "clean.html")])
    assert "No two analysed checkpoints have identical weights" in (
        tmp_path / "clean.html").read_text(encoding="utf-8")
