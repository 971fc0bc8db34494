"""Train a suite of Pythia-architecture models and save Pythia-style checkpoints.

``train_suite(config, corpus, out)`` writes::

    out/suite.json                 the manifest (sizes, parameters, tokens/step, seed, data, ...)
    out/tokenizer.json, ...        the suite tokenizer (also inside every checkpoint)
    out/data/tokens.npy            the tokenized corpus (cache)
    out/<size>/step{N}/            HF checkpoints: config.json, model.safetensors, tokenizer
    out/<size>/last/state.pt       resumable state (weights, AdamW state, history) while training

Determinism: the initialisation is seeded by ``config.seed``, and the batch of every step is a
function of ``(seed, step)`` only (:class:`~circuit_atlas.training.data.BatchSampler`), so the
same config gives the same checkpoints, and a run killed at any point and started again with the
same arguments continues from its last saved state and writes identical later checkpoints.
Checkpoints and state are written to a temporary path and renamed, so a kill never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from circuit_atlas._faults import fault_point
from circuit_atlas.errors import ConfigError
from circuit_atlas.models.adapters import get_adapter
from circuit_atlas.models.configs import quiet_transformers
from circuit_atlas.training.config import TrainConfig, get_size
from circuit_atlas.training.curriculum import (
    CURRICULA,
    CurriculumSampler,
    build_vocabulary,
    held_out_violations,
    text_templates,
)
from circuit_atlas.training.data import (
    BatchSampler,
    CorpusSource,
    corpus_files,
    corpus_source,
    describe_corpus,
    load_or_tokenize,
    read_corpus,
)
from circuit_atlas.training.manifest import MANIFEST_NAME, SizeRecord, SuiteManifest
from circuit_atlas.training.schedule import checkpoint_steps, learning_rate
from circuit_atlas.training.tokenizer import build_tokenizer, load_tokenizer

__all__ = ["ProgressFn", "TrainProgress", "train_suite"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TrainProgress:
    """A progress event of :func:`train_suite` (for progress bars; the library never prints).

    Attributes:
        event: ``prepare`` (tokenizer/data, ``message`` says which; while tokenizing, ``step``
            of ``total_steps`` files are done), ``start`` (a size begins
            or resumes at ``step``), ``step`` (an update finished), ``checkpoint`` (``step``
            saved), ``done`` (the size is complete).
        size: Model size, or "" during ``prepare``.
        step: Updates done.
        total_steps: Updates in the run.
        loss: Training loss of the last update (nats/token), NaN when not applicable.
        tokens_per_second: Throughput of this session so far.
        message: Human-readable detail.
    """

    event: Literal["prepare", "start", "step", "checkpoint", "done"]
    size: str = ""
    step: int = 0
    total_steps: int = 0
    loss: float = float("nan")
    tokens_per_second: float = 0.0
    message: str = ""


ProgressFn = Callable[[TrainProgress], None]


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("circuit-atlas", "torch", "transformers", "tokenizers"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _check_resume(out: Path, config: TrainConfig) -> SuiteManifest | None:
    if not (out / MANIFEST_NAME).is_file():
        return None
    manifest = SuiteManifest.read(out)
    old = TrainConfig.from_dict(manifest.config).resume_key()
    new = config.resume_key()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ConfigError(
            f"suite {str(out)!r} was trained with another config ({diffs}); use a new --out"
        )
    return manifest


def _prepare_tokenizer(config: TrainConfig, texts: list, out: Path, required, data_dir):
    if (out / "tokenizer.json").is_file() and (out / MANIFEST_NAME).is_file():
        manifest = SuiteManifest.read(out)
        return load_tokenizer(out), manifest.tokenizer, int(manifest.tokenizer["model_rows"])
    built = build_tokenizer(
        config.tokenizer, texts, vocab_size=config.vocab_size, required=required, data_dir=data_dir
    )
    built.tokenizer.save_pretrained(out)
    info = {**built.info, "model_rows": built.model_vocab_size}
    return built.tokenizer, info, built.model_vocab_size


def _fingerprint(corpus: list[dict[str, Any]], tokenizer: Any) -> str:
    digest = hashlib.sha256(json.dumps(corpus, sort_keys=True).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    return digest.hexdigest()


def train_suite(
    config: TrainConfig,
    corpus: CorpusSource,
    out: PathLike,
    *,
    data_dir: PathLike | None = None,
    progress: ProgressFn | None = None,
    wait: float | None = 0,
    on_wait: Callable[[str], None] | None = None,
) -> SuiteManifest:
    """Train every size of ``config`` on ``corpus`` and write the suite to ``out``.

    Resumes automatically: sizes already complete are skipped, a size with a saved state
    continues from it. Running again with the same arguments after completion does nothing.

    Args:
        config: The run configuration.
        corpus: A ``.txt`` file, a directory of them, or a list of files.
        out: Suite directory (created).
        data_dir: Data directory (evaluation vocabulary, Pythia tokenizer), searched first;
            then ``$CIRCUIT_ATLAS_DATA``, the cache, ``../shared/data``
            (:func:`circuit_atlas.data.resolve.search_path`).
        progress: Called with :class:`TrainProgress` events.
        wait: Seconds to wait for another process training into ``out`` (0: refuse at once;
            None: no limit). The lock is ``out/.train.lock`` (:func:`circuit_atlas.lock.
            hold_lock`), released by the kernel when its process dies.
        on_wait: Called with a message naming the other process before waiting for it.

    Returns:
        The final :class:`SuiteManifest` (also written to ``out/suite.json``).

    Raises:
        ConfigError: If ``out`` holds a suite trained with a different config.
        DataNotFoundError: If the corpus or the data directory is missing (nothing is
            created then).
        LockedError: If another process is training into ``out`` (and ``wait`` ran out).
        OutputPathError: If ``out`` is a file or not writable (before any work).
    """
    from circuit_atlas.lock import hold_lock
    from circuit_atlas.paths import check_output_dir

    out = Path(out)
    check_output_dir(out, "suite directory")
    texts = read_corpus(corpus_files(corpus), config.corpus_bytes)
    out.mkdir(parents=True, exist_ok=True)
    with hold_lock(out / LOCK_NAME, out / LOCK_RECORD, f"suite directory {str(out)!r}",
                   wait=wait, on_wait=on_wait):
        fault_point("train.locked")
        return _train_locked(config, corpus, texts, out, data_dir, progress)


LOCK_NAME = ".train.lock"
"""The suite directory's lock file (held by :func:`train_suite`)."""

LOCK_RECORD = ".train.lock.json"
"""Who holds :data:`LOCK_NAME` (pid, host, command, since), while it is held."""


def _train_locked(config: TrainConfig, corpus: CorpusSource, texts: Any, out: Path,
                  data_dir: PathLike | None, progress: ProgressFn | None) -> SuiteManifest:
    from circuit_atlas.tasks import evaluation_vocabulary

    notify = progress or (lambda event: None)
    previous = _check_resume(out, config)

    evaluation = evaluation_vocabulary(data_dir)
    vocabulary = build_vocabulary(evaluation, config.curriculum.shared)
    required = _required_strings(evaluation, vocabulary, data_dir)
    notify(TrainProgress("prepare", message="tokenizer"))
    tokenizer, tok_info, model_rows = _prepare_tokenizer(config, texts, out, required, data_dir)

    notify(TrainProgress("prepare", message="tokenizing corpus"))
    described = describe_corpus(texts)
    stream = load_or_tokenize(
        texts,
        tokenizer,
        out / "data",
        val_every=config.val_every,
        fingerprint=_fingerprint(described, tokenizer),
        on_file=lambda i, n, name: notify(
            TrainProgress("prepare", step=i, total_steps=n, message=f"tokenizing {name}")
        ),
    )
    cur = config.curriculum
    violations = held_out_violations(text_templates(cur.tasks))
    if violations:
        raise ConfigError(
            "curriculum templates must hold out the evaluation's: " + "; ".join(violations)
        )
    sampler_cur = CurriculumSampler(cur, vocabulary, tokenizer, config.seed) if cur.active else None
    n_cur = round(cur.fraction * config.batch_size) if cur.active else 0
    sampler = BatchSampler(
        stream,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        seed=config.seed,
        curriculum=sampler_cur,
        n_curriculum=n_cur,
    )
    steps = checkpoint_steps(config.steps, config.n_even)
    manifest = SuiteManifest(
        name=out.resolve().name,
        architecture=config.arch,
        config=config.to_dict(),
        tokens_per_step=config.tokens_per_step,
        seed=config.seed,
        schedule={"kind": "pythia-style", "steps": steps, "n_even": config.n_even},
        tokenizer=tok_info,
        data={
            "corpus": corpus_source(corpus),
            "files": described,
            "n_tokens": stream.n_tokens,
            "n_train_tokens": int(stream.train.size),
            "n_val_tokens": int(stream.val.size),
            "val_every_block": config.val_every,
        },
        curriculum=_curriculum_entry(config, vocabulary, sampler_cur, n_cur),
        sizes=dict(previous.sizes) if previous else {},
        versions=_versions(),
    )
    manifest.write(out)
    val_batches = sampler.validation(config.val_batches)
    for size in config.sizes:
        _train_size(
            config, size, out, sampler, val_batches, model_rows, tokenizer, manifest, notify
        )
    return manifest


def _required_strings(evaluation: dict, vocabulary, data_dir: PathLike | None) -> list[str]:
    """Strings the suite tokenizer keeps whole (see ``tokenizer.py``).

    The evaluation's names, places, objects and nouns, every word of the evaluation prompts
    except the SVA metric's verb list (3,900 forms; only the verbs inside SVA prompts, such as
    "likes"/"like", are kept whole so that singular and plural prompts align), the curriculum's
    words, the two-digit numbers and the centuries of the evaluation's and the curriculum's years.
    """
    from circuit_atlas.tasks.sva import read_pairs

    names = set(evaluation.get("names", ()))
    words = set(names)
    for key in ("places", "objects", "nouns", "sva_nouns"):
        words |= set(evaluation.get(key, ()))
    lowered = {n.lower() for n in names}
    words |= set(evaluation.get("words", ())) - set(evaluation.get("verbs", ())) - lowered
    for *_, singular, plural in read_pairs(data_dir):
        words |= set(re.findall(r"[A-Za-z]+", singular + " " + plural))
    words = {w for w in words if w.isalpha()}  # "isn't" spans two pre-tokens by design
    centuries = {int(y) // 100 for y in evaluation.get("years", ()) if str(y).isdigit()}
    digits = [f"{i:02d}" for i in range(100)] + [f" {c:02d}" for c in sorted(centuries)]
    return sorted(" " + w for w in words) + vocabulary.required_strings() + digits


def _curriculum_entry(config: TrainConfig, vocabulary, sampler, n_rows: int) -> dict[str, Any]:
    """The manifest's ``curriculum``: what was mixed in, and what it shared with the evaluation.

    ``helped_tasks`` are evaluation tasks with templated sentences, ``generic`` the curricula that
    train a mechanism rather than a task (``repeated-tokens``); ``weights`` maps every curriculum
    to its relative frequency; ``held_out`` states that no curriculum template contains an
    evaluation template (checked before training).
    """
    cur = config.curriculum
    active = list(cur.tasks) if cur.active else []
    helped = [t for t in active if CURRICULA[t].evaluated]
    evaluated = [t for t, c in CURRICULA.items() if c.evaluated]
    return {
        "fraction": cur.fraction if active else 0.0,
        "rows_per_batch": n_rows,
        "helped_tasks": helped,
        "generic": [t for t in active if not CURRICULA[t].evaluated],
        "unhelped_tasks": [t for t in evaluated if t not in helped],
        "weights": dict(zip(active, cur.task_weights(), strict=True)) if active else {},
        "first_steps": cur.first_steps if active else 0,
        "first_weights": (
            dict(zip(active, cur.first_weights, strict=True)) if active and cur.first_steps else {}
        ),
        "shared": list(cur.shared) if active else [],
        "held_out": "no curriculum template contains an evaluation template; evaluation "
        "prompts are never generated",
        "templates": {t: list(CURRICULA[t].templates) for t in active},
        "vocabulary": vocabulary.to_dict() if active else {},
        "examples": sampler.examples(8, seed=config.seed) if sampler is not None else [],
    }


def _init_model(config: TrainConfig, size: str, rows: int, tokenizer: Any):
    """The seeded random HF model of ``size`` in ``config.arch`` (the adapter's HF class)."""
    import transformers

    hf_config = get_size(size).hf_config(
        rows, arch=config.arch, eos_id=int(tokenizer.eos_token_id),
        pad_id=int(tokenizer.pad_token_id),
    )
    model_class = getattr(transformers, get_adapter(hf_config.model_type).hf_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = model_class(hf_config)
    return model


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1.0, betas=(0.9, 0.95), eps=1e-8)


def _save_atomic_dir(final: Path, write: Callable[[Path], None]) -> None:
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def _val_loss(model: torch.nn.Module, batches: list[torch.Tensor]) -> float | None:
    if not batches:
        return None
    model.eval()
    losses = [float(model(input_ids=b, labels=b).loss) for b in batches]
    model.train()
    return sum(losses) / len(losses)


def _train_size(
    config: TrainConfig,
    size: str,
    out: Path,
    sampler: BatchSampler,
    val_batches: list[torch.Tensor],
    rows: int,
    tokenizer: Any,
    manifest: SuiteManifest,
    notify: ProgressFn,
) -> None:
    size_dir = out / size
    state_path = size_dir / "last" / "state.pt"
    schedule = checkpoint_steps(config.steps, config.n_even)
    record = manifest.sizes.get(size)
    if record is not None and record.complete and (size_dir / f"step{config.steps}").is_dir():
        notify(TrainProgress("done", size, config.steps, config.steps, message="already trained"))
        return

    model = _init_model(config, size, rows, tokenizer)
    optimizer = _optimizer(model, config)
    n_params = sum(p.numel() for p in model.parameters())
    embeddings = {id(m.weight): m.weight for m in (model.get_input_embeddings(),
                                                    model.get_output_embeddings())}
    embed = sum(w.numel() for w in embeddings.values())  # tied (GPT-2): counted once
    shape = get_size(size)
    step, history, elapsed, loss_sum, loss_n = 0, [], 0.0, 0.0, 0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        loss_sum, loss_n = state["loss_sum"], state["loss_n"]
        logger.info("size %s: resuming at step %d", size, step)
    record = SizeRecord(
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        d_model=shape.d_model,
        d_mlp=shape.d_mlp,
        n_params=n_params,
        n_params_non_embedding=n_params - embed,
        lr=config.peak_lr(size),
        tokens_per_step=config.tokens_per_step,
        planned_steps=schedule,
        steps=[s for s in schedule if s <= step and (size_dir / f"step{s}").is_dir()],
        history=history,
        train_seconds=elapsed,
    )
    manifest.sizes[size] = record
    notify(TrainProgress("start", size, step, config.steps))

    def state_dict() -> dict[str, Any]:
        return {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "elapsed": elapsed,
            "loss_sum": loss_sum,
            "loss_n": loss_n,
        }

    def checkpoint() -> None:
        nonlocal loss_sum, loss_n
        val = _val_loss(model, val_batches)
        train = loss_sum / loss_n if loss_n else None
        history.append(
            {
                "step": step,
                "tokens": step * config.tokens_per_step,
                "train_loss": train,
                "val_loss": val,
                "elapsed_s": round(elapsed, 3),
            }
        )
        loss_sum, loss_n = 0.0, 0

        def write(tmp: Path) -> None:
            with quiet_transformers():
                model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

        _save_atomic_dir(size_dir / f"step{step}", write)
        _save_state(state_path, state_dict())
        record.steps = sorted(set(record.steps) | {step})
        record.train_seconds = round(elapsed, 3)
        done = step * config.tokens_per_step
        record.tokens_per_second = round(done / elapsed, 1) if elapsed > 0 else 0.0
        manifest.write(out)
        detail = "" if val is None else f"val loss {val:.3f}"
        notify(TrainProgress("checkpoint", size, step, config.steps, message=detail))

    model.train()
    if step == 0 and 0 in schedule and not record.steps:
        checkpoint()
    session_start, session_tokens = time.perf_counter(), 0
    while step < config.steps:
        tick = time.perf_counter()
        lr = learning_rate(
            step,
            config.steps,
            config.peak_lr(size),
            warmup_frac=config.warmup_frac,
            min_ratio=config.min_lr_ratio,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sampler.batch(step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        value = loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss_sum, loss_n = loss_sum + value, loss_n + 1
        elapsed += time.perf_counter() - tick
        session_tokens += batch.numel()
        rate = session_tokens / max(time.perf_counter() - session_start, 1e-9)
        notify(TrainProgress("step", size, step, config.steps, value, rate))
        if step in schedule:
            checkpoint()
        elif config.state_every and step % config.state_every == 0:
            _save_state(state_path, state_dict())
    record.complete = True
    manifest.write(out)
    shutil.rmtree(size_dir / "last", ignore_errors=True)
    notify(TrainProgress("done", size, step, config.steps))
