"""The prepared GPU check of issue 15: CUDA correctness, then unit timings, in one JSON.

Run through ``benchmarks/gpu.sh`` (it records ``nvidia-smi`` and the versions, and puts a
timeout around this). Sections, in order, each with a time budget so that the whole run stays
under 8 minutes on a lent device:

1. **Correctness** on the device (tolerances in :data:`TOLERANCES`, justified in
   ``docs/benchmarks.md``):

   * forward vs Hugging Face: our patchable forward against the HF model on the same weights,
     same device — a Pythia-shaped random model (fp32 and bf16) and a tiny random model of every
     adapter (GPT-NeoX, GPT-2, Llama, Qwen2, OLMo; fp32);
   * EAP vs the slow reference: EAP computed on the device (float64 and float32) against
     ``tests/reference_patching.py`` (an independent per-edge finite-difference implementation
     on HF's own modules, float64 on the CPU), tiny models of every adapter;
   * bf16 vs fp32: EAP-IG-inputs scores (Spearman over all edges, top-k overlap) and the size of
     the minimal faithful circuit (fast search), same weights, IOI-sized data.

2. **Unit timings** for the Pythia 160m, 410m, 1.4b and 2.8b shapes (random weights, built on
   the device; bf16 for every shape first, then fp32): behaviour, EAP, EAP-IG-inputs (m = 30),
   one circuit evaluation, the minimal-circuit search (fast) on the IG scores, and the unit
   total (behaviour + IG + search: one task of a study unit, components excluded); the peak GPU
   memory of each step (``torch.cuda.max_memory_allocated`` after
   ``reset_peak_memory_stats``). A shape whose predicted cost exceeds the time left is skipped
   with the reason recorded; a step still running at the deadline is interrupted (SIGALRM) and
   recorded as such.

The JSON is rewritten after every measurement, so a run killed from outside still leaves what it
measured (``status`` says ``running`` then). Exit status: 0 when every correctness check that ran
passed, 1 when one failed, 2 on a usage error.

``--quick`` (tiny shapes, few prompts, m = 3) exercises every code path on a CPU in about a
minute: ``bash benchmarks/gpu.sh --device cpu --quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT):  # the package and tests/ (the slow reference), uninstalled
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SCHEMA = "circuit-atlas/gpu-check/1"

TOLERANCES: dict[str, float] = {
    # forward vs HF, fp32, same device: |ours - hf| <= atol + rtol * |hf| elementwise (the
    # torch.testing.assert_close rule of tests/test_neox.py and tests/test_adapters.py).
    "forward_fp32_atol": 1e-4,
    "forward_fp32_rtol": 1e-4,
    # forward, bf16: max |ours_bf16 - hf_fp32| / max |hf_fp32| (bf16 has 8 mantissa bits,
    # 2^-8 = 3.9e-3 per rounding; HF's own bf16 forward is ~1e-2 off on these shapes).
    "forward_bf16_rel": 2e-2,
    # ... or, if larger, this multiple of HF's own bf16 error on the same prompts (a deep shape
    # can put HF itself near 2e-2; ours must not be much worse than HF in the same precision).
    "forward_bf16_vs_hf": 1.5,
    # EAP on the device vs the slow reference (float64, CPU): assert_close with
    # atol = tol * max|reference|, rtol = tol (tests/test_attribution.py uses 1e-4 in float64).
    "eap_ref_fp64": 1e-4,
    "eap_ref_fp32": 1e-3,
    # bf16 vs fp32 on the same weights: Spearman of the EAP-IG-inputs scores over all edges,
    # overlap of the top-k edges by |score|, and the minimal faithful circuit's size:
    # |n_bf16 - n_fp32| <= max(rel * n_fp32, abs) (abs = one step of the paper's scan).
    "bf16_spearman_min": 0.95,
    "bf16_topk_overlap_min": 0.8,
    "bf16_circuit_size_rel": 0.2,
    "bf16_circuit_size_abs": 25,
}
"""Every tolerance of the correctness section (also in docs/benchmarks.md)."""

FULL_SHAPES = ("pythia-160m", "pythia-410m", "pythia-1.4b", "pythia-2.8b")
QUICK_SHAPES = ("quick-2l", "quick-4l")
_QUICK_DIMS = {"quick-2l": (2, 64, 4, 512), "quick-4l": (4, 128, 4, 1024)}  # L, d, H, vocab


PEAK_CUDA = "torch.cuda.max_memory_allocated after reset_peak_memory_stats, per step (GiB)"
PEAK_CPU = "process peak RSS (ru_maxrss; never reset, so monotone; GiB)"


class OutOfTime(Exception):
    """Raised by the SIGALRM handler when a section's deadline passes."""


# ---------------------------------------------------------------------------------------------
# helpers


def sync(device: torch.device) -> None:
    """Wait for the device (CUDA work is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float:
    """Peak GPU memory since the last reset (CUDA), else the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Raise :class:`OutOfTime` in this (main) thread when ``time.monotonic()`` reaches ``at``."""
    if at is None or not hasattr(signal, "setitimer"):
        yield
        return
    left = at - time.monotonic()
    if left <= 0:
        raise OutOfTime("no time left")

    def handler(signum: int, frame: Any) -> None:
        raise OutOfTime("deadline reached")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-d tensors (ordinal ranks; ties are rare here)."""
    ra = a.detach().double().cpu().argsort().argsort().double()
    rb = b.detach().double().cpu().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Share of the top-``k`` edges by |score| that ``a`` and ``b`` have in common."""
    k = min(k, a.numel())
    ia = set(a.detach().abs().cpu().topk(k).indices.tolist())
    ib = set(b.detach().abs().cpu().topk(k).indices.tolist())
    return len(ia & ib) / k


def neox_config(shape: str) -> Any:
    """The HF GPTNeoXConfig of a Pythia shape (no download) or of a quick-mode tiny shape."""
    if shape in _QUICK_DIMS:
        from transformers import GPTNeoXConfig

        n_layers, d, h, vocab = _QUICK_DIMS[shape]
        return GPTNeoXConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=n_layers,
                             num_attention_heads=h, intermediate_size=4 * d, rotary_pct=0.25,
                             use_parallel_residual=True, tie_word_embeddings=False,
                             max_position_embeddings=128, bos_token_id=0,
                             eos_token_id=0)  # fmt: skip
    from circuit_atlas.models.pythia import pythia_config

    return pythia_config(shape)


def build_hf(shape: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A random HF GPT-NeoX of ``shape`` initialised directly on ``device`` (no CPU copy)."""
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        hf = GPTNeoXForCausalLM(neox_config(shape))
    return hf.eval().to(dtype)


def build_model(shape: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """The patchable model of :func:`build_hf` (the HF copy is freed)."""
    from circuit_atlas.models.neox import PatchableGPTNeoX

    hf = build_hf(shape, device, dtype, seed)
    model = PatchableGPTNeoX.from_hf(hf)
    del hf
    free(device)
    return model


def ioi_sized_data(model: Any, n: int, pos: int, seed: int = 0, batch_size: int = 32) -> Any:
    """Random prompts of IOI's size with a real clean-vs-corrupted gap (as bench_core.py).

    The answer is the clean run's top token and the wrong answer the corrupted run's best other
    token, so faithfulness is defined and the search runs as on a trained model. Built on the
    model's own forward in its own dtype.
    """
    from circuit_atlas.tasks.base import TaskDataset

    v = model.spec.vocab_size
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(2, v, (n, pos), generator=gen)
    corrupted = torch.randint(2, v, (n, pos), generator=gen)
    positions = torch.full((n,), pos - 1)
    tops, corrs = [], []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            sl = slice(s, s + batch_size)
            tops.append(model.run(clean[sl].to(model.device),
                                  positions[sl].to(model.device)).argmax(-1).cpu())  # fmt: skip
            corrs.append(model.run(corrupted[sl].to(model.device),
                                   positions[sl].to(model.device)).float().cpu())  # fmt: skip
    top = torch.cat(tops)
    corr = torch.cat(corrs)
    corr[torch.arange(n), top] = -float("inf")
    return TaskDataset("ioi-sized", clean, corrupted, torch.full((n,), pos), top,
                       corr.argmax(-1), "logit_diff")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# correctness checks (each returns a dict with "check", "passed" and the measured values)


def forward_check(hf: Any, model: Any, tokens: torch.Tensor, *, label: str,
                  reference: Any = None) -> dict:
    """Our forward against HF's on the same weights and device.

    fp32 (``model.dtype`` float32/float64): assert_close's elementwise rule with
    ``forward_fp32_atol``/``rtol``. bf16/fp16: ``max|ours - ref| / max|ref|`` against
    ``reference`` (HF in fp32 on the same weights; default ``hf``) must be at most
    ``forward_bf16_rel``; HF's own error in ``model.dtype`` is reported beside it.
    """
    tokens = tokens.to(model.device)
    with torch.no_grad():
        ours = model(tokens).double()
        ref_model = reference if reference is not None else hf
        ref = ref_model(tokens).logits.double()
        own = hf(tokens).logits.double() if reference is not None else None
    diff = (ours - ref).abs()
    scale = float(ref.abs().max())
    out: dict[str, Any] = {"check": f"forward vs HF: {label}", "dtype": str(model.dtype),
                           "max_abs_diff": float(diff.max()), "max_abs_ref": scale,
                           "finite": bool(torch.isfinite(ours).all())}  # fmt: skip
    if model.dtype in (torch.float32, torch.float64):
        atol, rtol = TOLERANCES["forward_fp32_atol"], TOLERANCES["forward_fp32_rtol"]
        worst = float((diff - rtol * ref.abs()).max())
        out.update(atol=atol, rtol=rtol, excess_over_rtol=worst,
                   passed=out["finite"] and worst <= atol)  # fmt: skip
    else:
        rel = float(diff.max()) / max(scale, 1e-12)
        tol = TOLERANCES["forward_bf16_rel"]
        if own is not None:  # HF's own forward in this dtype, against the same fp32 reference
            out["hf_same_dtype_rel_diff"] = float((own - ref).abs().max()) / max(scale, 1e-12)
            tol = max(tol, TOLERANCES["forward_bf16_vs_hf"] * out["hf_same_dtype_rel_diff"])
        out.update(rel_diff=rel, tol=tol, passed=out["finite"] and rel <= tol)
    return out


def forward_checks(shape: str, device: torch.device, *, n: int = 4, pos: int = 16) -> list[dict]:
    """Forward vs HF: the Pythia-shaped model (fp32, bf16) and a tiny model of every adapter."""
    from tests.tiny import ARCHS, arch_model, patchable

    from circuit_atlas.models.neox import PatchableGPTNeoX

    results = []
    hf = build_hf(shape, device, torch.float32)
    v = hf.config.vocab_size
    tokens = torch.randint(0, v, (n, pos), generator=torch.Generator().manual_seed(1))
    results.append(forward_check(hf, PatchableGPTNeoX.from_hf(hf), tokens, label=f"{shape} fp32"))
    free(device)
    hf16 = build_hf(shape, device, torch.bfloat16)
    results.append(forward_check(hf16, PatchableGPTNeoX.from_hf(hf16), tokens,
                                 label=f"{shape} bf16", reference=hf))  # fmt: skip
    del hf, hf16
    free(device)
    for arch in ARCHS:
        hf = arch_model(arch, heads=4, d_model=32, dtype=torch.float32, scale=3.0).to(device)
        tok = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(0))
        results.append(forward_check(hf, patchable(hf), tok, label=f"tiny {arch} fp32"))
    return results


def eap_reference_check(arch: str, device: torch.device, dtype: torch.dtype,
                        expected: torch.Tensor | None = None,
                        scores: torch.Tensor | None = None) -> dict:
    """EAP on ``device`` in ``dtype`` against the slow float64 CPU reference (tiny model).

    ``expected`` (the reference's scores) can be passed to reuse it across dtypes; ``scores``
    replaces our scores (tests use it to feed a broken result through the comparison).
    """
    from tests import reference_patching as ref
    from tests.tiny import arch_model, dataset, patchable

    from circuit_atlas.attribution import attribute

    hf = arch_model(arch, layers=2, heads=2, d_model=16, seed=7)  # float64, CPU
    data = dataset(n=3, pos=5, seed=3)
    model = patchable(hf)
    if expected is None:
        expected = ref.eap_scores(hf, data, model.graph.edge_names)
    if scores is None:
        model = model.to(device=device, dtype=dtype)
        scores = attribute(model, None, data, method="EAP")
    ours = scores.detach().double().cpu()
    tol = TOLERANCES["eap_ref_fp64" if dtype == torch.float64 else "eap_ref_fp32"]
    scale = float(expected.abs().max())
    excess = float(((ours - expected).abs() - tol * expected.abs()).max())
    return {"check": f"EAP vs slow reference: tiny {arch} {str(dtype).removeprefix('torch.')}",
            "edges": int(expected.numel()), "max_abs_ref": scale,
            "max_abs_diff": float((ours - expected).abs().max()),
            "rel_max_diff": float((ours - expected).abs().max()) / max(scale, 1e-12),
            "tol": tol, "nontrivial": scale > 1e-2,
            "passed": bool(scale > 1e-2 and torch.isfinite(ours).all() and excess <= tol * scale),
            "_expected": expected}  # fmt: skip


def eap_reference_checks(device: torch.device) -> list[dict]:
    from tests.tiny import ARCHS

    results = []
    for arch in ARCHS:
        first = eap_reference_check(arch, device, torch.float64)
        second = eap_reference_check(arch, device, torch.float32, expected=first["_expected"])
        results += [first, second]
    for r in results:
        r.pop("_expected")
    return results


def bf16_agreement(scores32: torch.Tensor, scores16: torch.Tensor, n32: int, n16: int,
                   *, label: str, k: int = 200, extra: dict | None = None) -> dict:
    """Compare bf16 and fp32 scores and circuit sizes against the ``bf16_*`` tolerances."""
    rho = spearman(scores32, scores16)
    overlap = topk_overlap(scores32, scores16, k)
    allowed = max(TOLERANCES["bf16_circuit_size_rel"] * n32, TOLERANCES["bf16_circuit_size_abs"])
    finite = bool(torch.isfinite(scores16).all() and torch.isfinite(scores32).all())
    return {"check": f"bf16 vs fp32: {label}", "spearman": rho, f"top{k}_overlap": overlap,
            "circuit_edges_fp32": int(n32), "circuit_edges_bf16": int(n16),
            "circuit_size_allowed_diff": allowed,
            "tol": {"spearman_min": TOLERANCES["bf16_spearman_min"],
                    "topk_overlap_min": TOLERANCES["bf16_topk_overlap_min"]},
            "passed": finite and rho >= TOLERANCES["bf16_spearman_min"]
            and overlap >= TOLERANCES["bf16_topk_overlap_min"]
            and abs(int(n16) - int(n32)) <= allowed, **(extra or {})}  # fmt: skip


def bf16_check(shape: str, device: torch.device, *, n: int, pos: int, ig_steps: int,
               batch_size: int) -> dict:
    """EAP-IG-inputs scores and minimal circuit size, bf16 vs fp32, same weights and data."""
    from circuit_atlas.attribution import attribute
    from circuit_atlas.search import find_circuit

    out = {}
    data = None
    for dtype in (torch.float32, torch.bfloat16):
        model = build_model(shape, device, dtype)
        if data is None:  # the fp32 model defines answers; bf16 runs the same prompts
            data = ioi_sized_data(model, n, pos, batch_size=batch_size)
        scores = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=ig_steps,
                           batch_size=batch_size)  # fmt: skip
        res = find_circuit(model, data, scores=scores, search="fast", batch_size=batch_size)
        out[dtype] = (scores.float().cpu(), res.n_edges, res.faithfulness, res.settings.get("note"))
        del model, res
        free(device)
    (s32, n32, f32, note32), (s16, n16, f16, note16) = out[torch.float32], out[torch.bfloat16]
    faithful = all(f is not None and f >= 0.8 for f in (f32, f16))
    return bf16_agreement(s32, s16, n32, n16, label=f"{shape}, {n} prompts × {pos} tokens, "
                          f"EAP-IG-inputs m={ig_steps}",
                          extra={"faithfulness_fp32": f32, "faithfulness_bf16": f16,
                                 "notes": [note32, note16],
                                 # both searches found a faithful circuit (not the fallback size)
                                 "size_informative": faithful})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# unit timings


def time_unit(shape: str, device: torch.device, dtype: torch.dtype, *, n: int, pos: int,
              ig_steps: int, batch_size: int, until: float | None,
              on_step: Callable[[dict], None] = lambda r: None) -> dict:
    """Time one unit's steps on a random ``shape`` model; the record is filled step by step."""
    from circuit_atlas.attribution import attribute
    from circuit_atlas.evaluation import behaviour, evaluate_circuits
    from circuit_atlas.search import find_circuit

    rec: dict[str, Any] = {"shape": shape, "dtype": str(dtype).removeprefix("torch."),
                           "status": "running", "seconds": {}, "peak_gb": {}}  # fmt: skip
    model = data = ig = res = beh = None

    def step(name: str, fn: Callable[[], Any]) -> Any:
        reset_peak(device)
        sync(device)
        t = time.perf_counter()
        with deadline(until):
            value = fn()
            sync(device)
        rec["seconds"][name] = round(time.perf_counter() - t, 3)
        rec["peak_gb"][name] = peak_gb(device)
        on_step(rec)
        return value

    try:
        model = step("build", lambda: build_model(shape, device, dtype))
        g = model.graph
        rec.update(nodes=g.n_nodes, edges=g.n_edges, params=sum(p.numel() for p in
                   model.parameters()), prompts=n, tokens=pos, batch_size=batch_size,
                   ig_steps=ig_steps)  # fmt: skip
        data = step("data_and_warmup", lambda: ioi_sized_data(model, n, pos,
                                                              batch_size=batch_size))
        beh = step("behaviour", lambda: behaviour(model, data, batch_size=batch_size))
        rec["clean_metric"] = beh["clean"]["metric"]
        step("EAP", lambda: attribute(model, g, data, method="EAP", batch_size=batch_size))
        ig = step("EAP_IG_inputs", lambda: attribute(model, g, data, method="EAP-IG-inputs",
                                                     ig_steps=ig_steps, batch_size=batch_size))
        mask = torch.zeros(g.n_edges, dtype=torch.bool)
        mask[ig.abs().cpu().argsort(descending=True)[:200]] = True
        step("circuit_eval", lambda: evaluate_circuits(model, g, data, mask.to(ig.device),
                                                       batch_size=batch_size))  # fmt: skip
        res = step("search_fast", lambda: find_circuit(model, data, scores=ig, search="fast",
                                                       batch_size=batch_size, baseline=beh))
        rec.update(circuit_edges=res.n_edges, circuit_nodes=res.n_nodes,
                   faithfulness=res.faithfulness, search_note=res.settings.get("note"),
                   search_stats=res.settings.get("search_stats"))  # fmt: skip
        s = rec["seconds"]
        rec["unit_s"] = round(s["behaviour"] + s["EAP_IG_inputs"] + s["search_fast"], 3)
        rec["peak_gb"]["max"] = max(rec["peak_gb"].values())
        rec["status"] = "done"
    except OutOfTime as exc:
        rec["status"] = "interrupted"
        rec["reason"] = f"out of time ({exc}) during the step after {list(rec['seconds'])}"
    except torch.cuda.OutOfMemoryError as exc:
        rec["status"] = "out_of_memory"
        rec["reason"] = str(exc).splitlines()[0]
    except Exception as exc:  # recorded, the run goes on
        rec["status"] = "error"
        rec["reason"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=8)
    finally:
        model = data = ig = res = beh = None  # drop the device tensors before freeing
        free(device)
    on_step(rec)
    return rec


def predicted_seconds(done: list[dict], shape: str, dtype: str, n_tokens: int) -> float | None:
    """Predict a unit's seconds from the last measured unit of the same dtype, by graph work."""
    same = [r for r in done if r["dtype"] == dtype and r["status"] == "done"]
    if not same:
        return None
    last = same[-1]
    ratio = _work(shape, n_tokens) / _work(last["shape"], n_tokens)
    total = sum(last["seconds"].values())
    return 1.25 * total * ratio


def _work(shape: str, n_tokens: int) -> float:
    cfg = neox_config(shape)
    L, d, H = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
    n_fwd, n_bwd = 1 + L * H + L, L * (3 * H + 1) + 1
    return float(24 * L * d * d * n_tokens + 2 * n_fwd * n_bwd * d * n_tokens)


# ---------------------------------------------------------------------------------------------
# the run


def versions() -> dict:
    import transformers

    import circuit_atlas

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "circuit_atlas": circuit_atlas.__version__,
           "cuda": torch.version.cuda, "platform": platform.platform(),
           "cpu_threads": torch.get_num_threads()}  # fmt: skip
    try:
        out["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                           capture_output=True, text=True,
                                           timeout=10).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def device_info(device: torch.device) -> dict:
    info: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, capability=f"{p.major}.{p.minor}",
                    total_memory_gb=round(p.total_memory / 2**30, 2),
                    multiprocessors=p.multi_processor_count,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    float32_matmul_precision=torch.get_float32_matmul_precision())  # fmt: skip
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


class Report:
    """The JSON document, rewritten atomically after every change."""

    def __init__(self, path: Path, doc: dict):
        self.path, self.doc = path, doc
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=_jsonable) + "\n")
        os.replace(tmp, self.path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def run_correctness(device: torch.device, args: argparse.Namespace, until: float,
                    report: Report) -> None:
    """The correctness section; each group is skipped (recorded) when its time is up."""
    sec = report.doc["correctness"]
    groups: list[tuple[str, Callable[[], list[dict]]]] = [
        ("forward vs HF", lambda: forward_checks(args.correctness_shape, device)),
        ("EAP vs slow reference", lambda: eap_reference_checks(device)),
    ]
    for shape in args.bf16_shapes:
        groups.append((f"bf16 vs fp32 ({shape})",
                       lambda shape=shape: [bf16_check(shape, device, n=args.prompts,
                                                       pos=args.tokens, ig_steps=args.ig_steps,
                                                       batch_size=args.batch_size)]))  # fmt: skip
    for name, fn in groups:
        t = time.perf_counter()
        n_before = len(sec["checks"])
        try:
            with deadline(until):
                checks = fn()
            sec["checks"] += checks
            sec["groups"].append({"group": name, "seconds": round(time.perf_counter() - t, 2),
                                  "passed": all(c["passed"] for c in checks)})  # fmt: skip
        except OutOfTime:
            sec["groups"].append({"group": name, "status": "skipped",
                                  "reason": "correctness time budget spent"})  # fmt: skip
        except Exception as exc:
            sec["checks"].append({"check": name, "passed": False,
                                  "error": f"{type(exc).__name__}: {exc}",
                                  "traceback": traceback.format_exc(limit=8)})  # fmt: skip
            sec["groups"].append({"group": name, "passed": False, "error": str(exc)})
        free(device)
        report.write()
        last = sec["groups"][-1]
        print(f"[correctness] {name}: "
              + (f"skipped ({last['reason']})" if last.get("status") == "skipped" else
                 ", ".join(f"{c['check'].split(': ', 1)[-1]} {'ok' if c['passed'] else 'FAIL'}"
                           for c in sec["checks"][n_before:])), flush=True)  # fmt: skip
    sec["passed"] = bool(sec["checks"]) and all(c["passed"] for c in sec["checks"])
    sec["complete"] = all("status" not in g for g in sec["groups"])


def run_timings(device: torch.device, args: argparse.Namespace, until: float,
                report: Report) -> None:
    sec = report.doc["timings"]
    n_tokens = args.prompts * args.tokens
    for i, dtype_name in enumerate(args.dtypes):
        dtype = getattr(torch, dtype_name)
        # Each dtype's pass gets an equal share of what is left (time a pass does not use goes
        # to the next), so a slow bf16 2.8b cannot starve the fp32 pass of its small shapes.
        share = (until - time.monotonic()) / (len(args.dtypes) - i)
        pass_until = min(until, time.monotonic() + max(share, 0.0))
        sec["passes"].append({"dtype": dtype_name, "budget_s": round(max(share, 0.0), 1)})
        for shape in args.shapes:
            left = pass_until - time.monotonic()
            guess = predicted_seconds(sec["units"], shape, dtype_name, n_tokens)
            if left <= 0 or (guess is not None and guess > left):
                why = (f"predicted {guess:.0f} s (from the previous {dtype_name} shape, by graph "
                       f"work) > {left:.0f} s left" if guess is not None and left > 0
                       else f"the {dtype_name} pass's time budget is spent")  # fmt: skip
                sec["skipped"].append({"shape": shape, "dtype": dtype_name, "reason": why})
                report.write()
                print(f"[timing] {shape} {dtype_name}: skipped ({why})", flush=True)
                continue
            sec["units"].append({"shape": shape, "dtype": dtype_name, "status": "starting"})

            def on_step(rec: dict) -> None:
                sec["units"][-1] = rec
                report.write()

            rec = time_unit(shape, device, dtype, n=args.prompts, pos=args.tokens,
                            ig_steps=args.ig_steps, batch_size=args.batch_size,
                            until=pass_until,
                            on_step=on_step)  # fmt: skip
            rec["predicted_s"] = None if guess is None else round(guess, 1)
            on_step(rec)
            print(f"[timing] {shape} {dtype_name}: {rec['status']} "
                  + " ".join(f"{k}={v}s" for k, v in rec["seconds"].items())
                  + (f" unit={rec['unit_s']}s peak={rec['peak_gb']['max']}GB"
                     f" circuit={rec['circuit_edges']} edges" if rec["status"] == "done"
                     else f" ({rec.get('reason')})"), flush=True)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes, few prompts, m = 3: every code path in about a minute")
    p.add_argument("--out", default=None, help="the JSON file to write")
    p.add_argument("--budget-s", type=float, default=None,
                   help="whole run, from start (default 420; quick 300)")
    p.add_argument("--correctness-budget-s", type=float, default=None,
                   help="correctness section (default 120; quick 150)")
    p.add_argument("--shapes", default=None, help="comma-separated (default: the four Pythia)")
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--prompts", type=int, default=None, help="IOI-sized: 70 (quick 8)")
    p.add_argument("--tokens", type=int, default=None, help="prompt length: 16 (quick 8)")
    p.add_argument("--ig-steps", type=int, default=None, help="30 (quick 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--skip-correctness", action="store_true")
    p.add_argument("--skip-timings", action="store_true")
    p.add_argument("--nvidia-smi", default=None, help="a file with nvidia-smi's output to embed")
    args = p.parse_args(argv)
    q = args.quick
    args.budget_s = args.budget_s if args.budget_s is not None else (300.0 if q else 420.0)
    if args.correctness_budget_s is None:
        args.correctness_budget_s = 150.0 if q else 120.0
    args.shapes = args.shapes.split(",") if args.shapes else list(QUICK_SHAPES if q
                                                                   else FULL_SHAPES)
    args.dtypes = args.dtypes.split(",")
    args.prompts = args.prompts or (8 if q else 70)
    args.tokens = args.tokens or (8 if q else 16)
    args.ig_steps = args.ig_steps or (3 if q else 30)
    args.correctness_shape = QUICK_SHAPES[0] if q else FULL_SHAPES[0]
    # bf16 vs fp32: the 70m shape has a faithful circuit under 1600 edges on random weights
    # (docs/benchmarks.md: 317 edges), so its size comparison is informative; on 160m random
    # weights the search usually ends at the 1600-edge fallback and only the scores compare.
    args.bf16_shapes = [QUICK_SHAPES[1]] if q else ["pythia-70m", FULL_SHAPES[0]]
    return args


def main(argv: list[str] | None = None) -> int:
    start = time.monotonic()
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch.cuda.is_available() is False "
              f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
              "use --device cpu for the CPU smoke run", file=sys.stderr)  # fmt: skip
        return 2
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"gpu_check-{stamp}.json")
    smi = None
    if args.nvidia_smi and Path(args.nvidia_smi).is_file():
        smi = Path(args.nvidia_smi).read_text(errors="replace")
    doc = {
        "schema": SCHEMA, "status": "running", "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(device), "versions": versions(), "nvidia_smi": smi,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "nvidia_smi")},
        "tolerances": TOLERANCES,
        "correctness": {"passed": None, "complete": None, "groups": [], "checks": []},
        "timings": {"units": [], "skipped": [], "passes": [],
                    "peak_memory": PEAK_CUDA if device.type == "cuda" else PEAK_CPU},
    }
    report = Report(out, doc)
    print(f"gpu_check: {doc['mode']} run on {device} ({doc['device'].get('name', '')}), "
          f"budget {args.budget_s:.0f} s, writing {out}", flush=True)
    hard = start + args.budget_s
    if not args.skip_correctness:
        t = time.monotonic()
        run_correctness(device, args, min(hard, t + args.correctness_budget_s), report)
        doc["correctness"]["seconds"] = round(time.monotonic() - t, 2)
    if not args.skip_timings:
        t = time.monotonic()
        run_timings(device, args, hard, report)
        doc["timings"]["seconds"] = round(time.monotonic() - t, 2)
    doc["elapsed_s"] = round(time.monotonic() - start, 2)
    doc["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc["status"] = "complete"
    report.write()
    ok = doc["correctness"]["passed"] is not False
    verdict = {True: "passed", False: "FAILED", None: "not run"}[doc["correctness"]["passed"]]
    print(f"gpu_check: correctness {verdict}"
          f"{'' if doc['correctness']['complete'] in (True, None) else ' (incomplete)'}; "
          f"{sum(u['status'] == 'done' for u in doc['timings']['units'])} units timed, "
          f"{len(doc['timings']['skipped'])} skipped; {doc['elapsed_s']} s; JSON: {out}",
          flush=True)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
