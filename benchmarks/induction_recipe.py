"""Which data and optimiser recipe grows an induction head fast in a 2-layer GPT-NeoX (issue 11).

A search harness beside ``benchmarks/induction_plateau.py`` (docs/training.md, "Induction
recipes on one core", 2026-12-04). A model of about the ``tiny`` shape (HF
``GPTNeoXForCausalLM`` from :meth:`circuit_atlas.training.ModelSize.hf_config`, optionally with
tied embeddings or a sequential residual) is trained with AdamW on a batch of ``--rows`` rows:
a ``--copy-frac`` share are *copy rows* of ``--copy-ctx`` tokens (all rows for the first
``--open-steps`` steps), the rest natural text of
``--ctx`` tokens from the demo corpus (tokenized once with a corpus BPE of ``--vocab`` merges
and cached under ``--cache``).

A copy row is ``BOS``, then segments ``span × r + BOS`` (span length uniform in
``--span-min``–``--span-max``, ``r`` uniform in ``--rep-min``–``--rep-max``), cut to
``--copy-ctx`` (with ``--long-frac``, that share of segments is a ``--long-min``–``--long-max``
span repeated ``--long-rep`` times instead). Spans vary in length, so no fixed-offset head
predicts the repeats; only a head that finds the earlier occurrence of the current token
(induction) does. ``--source random`` draws span tokens uniformly from a pool of ``--pool``
ids (0: every non-special id); ``--source text`` takes the span from the corpus (a
natural-text chunk repeated).

Every ``--eval-every`` steps it prints, for each ``L`` in ``--eval-lens``, the project's
induction score (:func:`circuit_atlas.components.attention_scores.repeated_tokens` and
``diagonal_scores``: ``batch`` 2 × ``(2 × L)`` random ids in ``[100, vocab)``, no BOS, seed 0,
as the demo scores it; best head) and the mean loss on the first and second copy of the same
sequences (second copy without its first token), the best previous-token score and the mean
training loss since the last evaluation.

Usage (one thread; ``--seconds`` stops a run early)::

    python benchmarks/induction_recipe.py --threads 1 --copy-frac 1 --copy-ctx 32 \\
        --span-min 3 --span-max 10 --rep-min 3 --rep-max 6 --steps 3000
    python benchmarks/induction_recipe.py --threads 1 --copy-frac 0.5 --source text ...

Prints ``step tokens wall-seconds cpu-seconds | L: induction first/second | prev | train`` per
evaluation (wall time includes the evaluations; on a shared machine the CPU seconds of this
process are the fairer cost) and a final ``best`` line.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch


def text_stream(cache: Path, vocab: int) -> tuple[np.ndarray, int]:
    """The demo corpus as one token stream (BOS-separated files) and the tokenizer's size."""
    path = cache / f"tokens-{vocab}.npy"
    if path.is_file():
        stream = np.load(path)
        return stream, int((cache / f"rows-{vocab}.txt").read_text())
    from circuit_atlas.data import corpus_paths
    from circuit_atlas.training.data import read_corpus
    from circuit_atlas.training.tokenizer import build_tokenizer

    texts = read_corpus(corpus_paths())
    built = build_tokenizer("bpe", texts, vocab_size=vocab)
    tok = built.tokenizer
    ids: list[int] = []
    for t in texts:
        ids += [int(tok.eos_token_id)] + tok(t.text, add_special_tokens=False)["input_ids"]
    cache.mkdir(parents=True, exist_ok=True)
    stream = np.asarray(ids, dtype=np.int32)
    np.save(path, stream)
    (cache / f"rows-{vocab}.txt").write_text(str(built.model_vocab_size))
    return stream, built.model_vocab_size


def main() -> None:  # noqa: C901, PLR0915 (a flat experiment script)
    p = argparse.ArgumentParser()
    a = p.add_argument
    a("--layers", type=int, default=2)
    a("--heads", type=int, default=4)
    a("--d-model", type=int, default=64)
    a("--d-mlp", type=int, default=0, help="0: 4 × d_model")
    a("--rotary-dims", type=int, default=16)
    a("--tied", action="store_true", help="tie input and output embeddings")
    a("--sequential", action="store_true", help="use_parallel_residual=False")
    a("--vocab", type=int, default=4096, help="BPE merges target (the demo's)")
    a("--cache", default="/tmp/induction-recipe-cache")
    a("--rows", type=int, default=16)
    a("--ctx", type=int, default=128, help="tokens per text row")
    a("--copy-frac", type=float, default=1.0)
    a("--copy-ctx", type=int, default=128, help="tokens per copy row")
    a("--open-steps", type=int, default=0, help="opening phase: all rows are copy rows")
    a("--source", choices=("random", "text"), default="random")
    a("--pool", type=int, default=0, help="distinct random ids (0: all non-special)")
    a("--span-min", type=int, default=8)
    a("--span-max", type=int, default=40)
    a("--rep-min", type=int, default=2)
    a("--rep-max", type=int, default=2)
    a("--long-frac", type=float, default=0.0,
      help="share of segments drawn with --long-min/--long-max spans repeated --long-rep times")
    a("--long-min", type=int, default=20)
    a("--long-max", type=int, default=60)
    a("--long-rep", type=int, default=2)
    a("--lr", type=float, default=3e-3)
    a("--warmup", type=int, default=20)
    a("--wd", type=float, default=0.01)
    a("--beta2", type=float, default=0.95)
    a("--schedule", choices=("const", "cosine"), default="const")
    a("--steps", type=int, default=3000)
    a("--seconds", type=float, default=230.0, help="stop after this many training seconds")
    a("--eval-every", type=int, default=250)
    a("--eval-lens", default="20,60")
    a("--eval-in-pool", action="store_true",
      help="also score sequences drawn from the training pool (a diagnosis, not the demo's)")
    a("--threads", type=int, default=1)
    a("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import GPTNeoXForCausalLM

    from circuit_atlas.components.attention_scores import diagonal_scores, repeated_tokens
    from circuit_atlas.training import ModelSize

    stream, vocab = text_stream(Path(args.cache), args.vocab)
    n_copy = round(args.copy_frac * args.rows)
    n_text = args.rows - n_copy
    d = args.d_model
    size = ModelSize("probe", args.layers, args.heads, d, args.d_mlp or 4 * d, args.lr,
                     rotary_dims=args.rotary_dims)  # fmt: skip
    cfg = size.hf_config(vocab)
    cfg.tie_word_embeddings = args.tied
    cfg.use_parallel_residual = not args.sequential
    cfg._attn_implementation = "eager"  # attention probabilities for the score
    torch.manual_seed(args.seed)
    model = GPTNeoXForCausalLM(cfg)
    if args.tied:
        model.tie_weights()
    decay = [q for n, q in model.named_parameters() if q.dim() >= 2]
    other = [q for n, q in model.named_parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, args.beta2))  # fmt: skip

    def lr_at(step: int) -> float:
        if step <= args.warmup:
            return args.lr * step / max(1, args.warmup)
        if args.schedule == "const":
            return args.lr
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * t)))

    rng = random.Random(args.seed + 1)
    all_ids = list(range(2, vocab))
    pool = rng.sample(all_ids, args.pool) if args.pool else all_ids

    def span(lo: int, hi: int) -> list[int]:
        n = rng.randint(lo, hi)
        if args.source == "random":
            return [pool[rng.randrange(len(pool))] for _ in range(n)]
        start = rng.randrange(len(stream) - n)
        return [int(t) for t in stream[start : start + n]]

    def copy_row() -> list[int]:
        ids = [0]
        while len(ids) < args.copy_ctx:
            if rng.random() < args.long_frac:
                ids += span(args.long_min, args.long_max) * args.long_rep + [0]
            else:
                ids += span(args.span_min, args.span_max) * rng.randint(args.rep_min, args.rep_max)
                ids += [0]
        return ids[: args.copy_ctx]

    def text_rows(n: int) -> torch.Tensor:
        starts = [rng.randrange(len(stream) - args.ctx) for _ in range(n)]
        return torch.from_numpy(np.stack([stream[s : s + args.ctx] for s in starts])).long()

    lens = [int(x) for x in args.eval_lens.split(",")]
    evals = {str(L): repeated_tokens(vocab, seq_len=L, batch=2, low=100, seed=0) for L in lens}
    if args.eval_in_pool:
        table = torch.tensor(pool)
        evals |= {f"pool{L}": table[x % len(pool)] for L, x in evals.items()}

    @torch.no_grad()
    def evaluate() -> dict[str, tuple[float, float, float, float]]:
        model.eval()
        res = {}
        for key, x in evals.items():
            L = x.shape[1] // 2
            out = model(x, output_attentions=True)
            pats = torch.stack(out.attentions).permute(0, 2, 1, 3, 4)  # (layers, h, b, p, p)
            sc = diagonal_scores(pats, L)
            nll = -out.logits[:, :-1].log_softmax(-1).gather(-1, x[:, 1:, None])[..., 0]
            first, second = nll[:, : L - 1].mean(), nll[:, L:].mean()  # targets 1..L-1, L+1..
            res[key] = (float(sc["induction"].max()), float(first), float(second),
                      float(sc["previous_token"].max()))  # fmt: skip
        model.train()
        return res

    print(f"# {vars(args)} vocab_rows={vocab} params={sum(q.numel() for q in model.parameters())}")
    tokens_per_step = n_copy * args.copy_ctx + n_text * args.ctx
    best: dict[str, tuple[float, int]] = {key: (0.0, 0) for key in evals}

    window: list[float] = []

    def report(step: int, seconds: float) -> None:
        res = evaluate()
        train = sum(window) / len(window) if window else float("nan")
        window.clear()
        parts = []
        for L, (ind, f, s, _prev) in res.items():
            if ind > best[L][0]:
                best[L] = (ind, step)
            parts.append(f"{L}: {ind:.3f} {f:.2f}/{s:.2f}")
        prev = max(r[3] for r in res.values())
        cpu = time.process_time() - cpu0
        print(f"{step} {step * tokens_per_step / 1e6:.2f}M {seconds:.0f}s cpu {cpu:.0f}s | "
              + " | ".join(parts) + f" | prev {prev:.2f} | train {train:.2f}",
              flush=True)  # fmt: skip

    cpu0 = time.process_time()
    report(0, 0.0)
    start = time.perf_counter()
    train_time = 0.0
    step = 0
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss_sum, n_tok = 0.0, 0
        k_copy = args.rows if step <= args.open_steps else n_copy
        if k_copy:
            x = torch.tensor([copy_row() for _ in range(k_copy)])
            loss_sum = model(input_ids=x, labels=x).loss * x[:, 1:].numel()
            n_tok += x[:, 1:].numel()
        if args.rows - k_copy:
            x = text_rows(args.rows - k_copy)
            loss_sum = loss_sum + model(input_ids=x, labels=x).loss * x[:, 1:].numel()
            n_tok += x[:, 1:].numel()
        loss = loss_sum / n_tok
        loss.backward()
        window.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_time = time.perf_counter() - start
        if step % args.eval_every == 0:
            report(step, train_time)
        if train_time > args.seconds:
            if step % args.eval_every:
                report(step, train_time)
            break
    summary = ", ".join(f"2x{L}: {b:.3f} at step {s}" for L, (b, s) in best.items())
    print(f"best {summary}; {step} steps, {step * tokens_per_step / 1e6:.2f}M tokens, "
          f"{train_time:.0f}s")  # fmt: skip


if __name__ == "__main__":
    main()
