"""benchmarks/gpu_check.py: its correctness checks pass on sound models and fail on broken ones.

The CPU tests run the quick mode's functions on tiny models (a few seconds); the ``cuda`` test
runs the same checks on a GPU and is skipped without one.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", module)
    spec.loader.exec_module(module)
    return module


gc = _load()
CPU = torch.device("cpu")
SHAPE = "quick-2l"


def test_forward_check_passes_and_catches_a_perturbed_model():
    from circuit_atlas.models.neox import PatchableGPTNeoX

    hf = gc.build_hf(SHAPE, CPU, torch.float32)
    tokens = torch.randint(0, hf.config.vocab_size, (3, 8),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    good = gc.forward_check(hf, PatchableGPTNeoX.from_hf(hf), tokens, label="fp32")
    assert good["passed"] and good["max_abs_ref"] > 0.1, good
    bad = PatchableGPTNeoX.from_hf(hf)
    with torch.no_grad():
        dict(bad.named_parameters())["layers.1.W_O"].mul_(1.01)  # one layer's output, 1%
    broken = gc.forward_check(hf, bad, tokens, label="fp32 perturbed")
    assert not broken["passed"] and broken["max_abs_diff"] > 1e-4, broken

    hf16 = gc.build_hf(SHAPE, CPU, torch.bfloat16)
    half = gc.forward_check(hf16, PatchableGPTNeoX.from_hf(hf16), tokens, label="bf16",
                            reference=hf)  # fmt: skip
    assert half["passed"] and 0 < half["rel_diff"] <= half["tol"], half
    bad16 = PatchableGPTNeoX.from_hf(hf16)
    with torch.no_grad():
        dict(bad16.named_parameters())["layers.0.W_qkv"].mul_(1.5)
    assert not gc.forward_check(hf16, bad16, tokens, label="bf16 bad", reference=hf)["passed"]


def test_eap_reference_check_passes_and_catches_wrong_scores():
    good = gc.eap_reference_check("gpt_neox", CPU, torch.float32)
    assert good["passed"] and good["nontrivial"], good
    expected = good.pop("_expected")
    wrong = expected.clone()
    wrong[int(expected.abs().argmax())] *= 0.97  # one edge 3% off
    bad = gc.eap_reference_check("gpt_neox", CPU, torch.float32, expected=expected, scores=wrong)
    assert not bad["passed"]
    assert not gc.eap_reference_check("gpt_neox", CPU, torch.float64, expected=expected,
                                      scores=expected.flip(0))["passed"]  # fmt: skip


def test_bf16_agreement_rules():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2000, generator=g)
    noisy = s + 1e-3 * torch.randn(2000, generator=g)
    assert gc.bf16_agreement(s, noisy, 100, 110, label="ok")["passed"]
    assert not gc.bf16_agreement(s, s[torch.randperm(2000, generator=g)], 100, 100,
                                 label="shuffled")["passed"]  # fmt: skip
    assert not gc.bf16_agreement(s, noisy, 200, 260, label="size")["passed"]  # > 20%
    assert gc.bf16_agreement(s, noisy, 50, 75, label="small")["passed"]  # one scan step
    assert not gc.bf16_agreement(s, noisy.clone().fill_(float("nan")), 10, 10,
                                 label="nan")["passed"]  # fmt: skip


def test_bf16_check_on_a_tiny_model():
    r = gc.bf16_check(SHAPE, CPU, n=6, pos=8, ig_steps=2, batch_size=8)
    assert r["passed"], r
    assert r["spearman"] > 0.95 and r["circuit_edges_fp32"] > 0


def test_time_unit_records_every_step_and_stops_at_the_deadline():
    steps = []
    rec = gc.time_unit(SHAPE, CPU, torch.float32, n=4, pos=6, ig_steps=2, batch_size=4,
                       until=None, on_step=lambda r: steps.append(dict(r["seconds"])))  # fmt: skip
    assert rec["status"] == "done", rec
    assert set(rec["seconds"]) == {"build", "data_and_warmup", "behaviour", "EAP",
                                   "EAP_IG_inputs", "circuit_eval", "search_fast"}  # fmt: skip
    assert rec["unit_s"] > 0 and rec["peak_gb"]["max"] > 0 and rec["edges"] > 0
    assert len(steps) >= 7
    late = gc.time_unit(SHAPE, CPU, torch.float32, n=4, pos=6, ig_steps=2, batch_size=4,
                        until=time.monotonic() - 1)  # fmt: skip
    assert late["status"] == "interrupted" and "out of time" in late["reason"]


def test_deadline_interrupts_a_running_step():
    t = time.monotonic()
    with pytest.raises(gc.OutOfTime):
        with gc.deadline(t + 0.2):
            while time.monotonic() < t + 5:
                pass
    assert time.monotonic() - t < 2
    with gc.deadline(time.monotonic() + 5):  # finishes in time: the timer is cleared after
        pass
    time.sleep(0.01)


def test_prediction_scales_with_the_shape():
    done = [{"shape": "quick-2l", "dtype": "float32", "status": "done", "seconds": {"x": 2.0}}]
    assert gc.predicted_seconds(done, "quick-2l", "bfloat16", 64) is None
    same = gc.predicted_seconds(done, "quick-2l", "float32", 64)
    bigger = gc.predicted_seconds(done, "quick-4l", "float32", 64)
    assert same == pytest.approx(2.5) and bigger > 4 * same
    assert gc.predicted_seconds(done, "pythia-2.8b", "float32", 64) > 1e4


def test_main_writes_one_json_and_skips_what_does_not_fit(tmp_path):
    out = tmp_path / "check.json"
    rc = gc.main(["--device", "cpu", "--quick", "--skip-correctness", "--shapes",
                  "quick-2l,pythia-2.8b", "--dtypes", "float32", "--prompts", "4",
                  "--tokens", "6", "--ig-steps", "2", "--budget-s", "60", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["status"] == "complete" and doc["schema"] == gc.SCHEMA
    assert [u["shape"] for u in doc["timings"]["units"]] == ["quick-2l"]
    assert doc["timings"]["units"][0]["status"] == "done"
    (skip,) = doc["timings"]["skipped"]
    assert skip["shape"] == "pythia-2.8b" and "predicted" in skip["reason"]
    assert doc["tolerances"] == gc.TOLERANCES


def test_main_refuses_cuda_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gc.main(["--device", "cuda", "--out", str(tmp_path / "x.json")]) == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_correctness_on_cuda():
    cuda = torch.device("cuda")
    checks = gc.forward_checks(SHAPE, cuda) + gc.eap_reference_checks(cuda)
    checks.append(gc.bf16_check(SHAPE, cuda, n=8, pos=8, ig_steps=3, batch_size=8))
    failed = [c for c in checks if not c["passed"]]
    assert not failed, failed
    rec = gc.time_unit(SHAPE, cuda, torch.bfloat16, n=8, pos=8, ig_steps=3, batch_size=8,
                       until=None)  # fmt: skip
    assert rec["status"] == "done" and rec["peak_gb"]["max"] > 0, rec


def test_a_failed_check_fails_the_run(tmp_path, monkeypatch):
    fail = {"check": "forward vs HF: stub", "passed": False}
    monkeypatch.setattr(gc, "forward_checks", lambda shape, device: [fail])
    monkeypatch.setattr(gc, "eap_reference_checks", lambda device: [])
    monkeypatch.setattr(gc, "bf16_check", lambda *a, **k: {"check": "bf16 vs fp32: stub",
                                                             "passed": True})  # fmt: skip
    out = tmp_path / "c.json"
    assert gc.main(["--device", "cpu", "--quick", "--skip-timings", "--out", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert doc["correctness"]["passed"] is False and doc["correctness"]["complete"] is True
