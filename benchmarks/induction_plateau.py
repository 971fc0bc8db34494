"""How many tokens a small GPT-NeoX needs before it copies in context (the induction plateau).

Reproduces the "minimal loop" rows of docs/training.md ("Induction heads within the demo's
budget"): a model of one of our sizes' shape (HF ``GPTNeoXForCausalLM``, the config of
:meth:`circuit_atlas.training.ModelSize.hf_config`) is trained with AdamW on rows of random
tokens that repeat, and every ``--eval-every`` steps the mean loss on the first and on the
second copy of ``BOS + span + span`` (span of ``--eval-span`` tokens) is printed. A model that
copies in context has a much lower loss on the second copy; one that does not stays at
``ln(pool)`` on both.

Two row formats:

* ``--fixed-span N``: every row is ``BOS + span + span`` with a span of exactly N tokens. A single
  head attending N − 1 positions back solves it, so the loss drops quickly without an
  induction head (a positional shortcut; do not read it as induction).
* default: the curriculum's format: ``BOS``, then segments of a random span of
  ``--span-min``–``--span-max`` tokens followed by the same span and ``BOS``, cut to ``--ctx``
  tokens. Only a previous-token head composed with a matching head can predict the second copy.

Usage (one core, ≈ 70 s per 1,000 steps of 16 × 64 tokens at d_model 128)::

    python benchmarks/induction_plateau.py --steps 3000 --lr 3e-3
    python benchmarks/induction_plateau.py --fixed-span 20 --steps 1000
    python benchmarks/induction_plateau.py --rows 4 --ctx 32 --span-min 4 --span-max 14 \
        --eval-span 10 --steps 45000

Prints one line per evaluation: ``step first_copy_loss second_copy_loss seconds``.
"""

from __future__ import annotations

import argparse
import random
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=3547, help="embedding rows")
    parser.add_argument("--pool", type=int, default=256, help="distinct random tokens")
    parser.add_argument("--rows", type=int, default=16, help="rows per step (batch size)")
    parser.add_argument("--ctx", type=int, default=64, help="tokens per row")
    parser.add_argument("--span-min", type=int, default=8)
    parser.add_argument("--span-max", type=int, default=40)
    parser.add_argument("--fixed-span", type=int, default=0, help="0: variable spans")
    parser.add_argument("--eval-span", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if 2 * args.eval_span + 1 > args.ctx and not args.fixed_span:
        parser.error(f"--eval-span {args.eval_span}: 2 × span + 1 must fit --ctx {args.ctx}")
    torch.set_num_threads(args.threads)

    from transformers import GPTNeoXForCausalLM

    from circuit_atlas.training import ModelSize

    d = args.d_model
    size = ModelSize("probe", args.layers, args.heads, d, 4 * d, args.lr)
    torch.manual_seed(args.seed)
    model = GPTNeoXForCausalLM(size.hf_config(args.vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    pool = torch.tensor(sorted(random.Random(args.seed).sample(range(2, args.vocab), args.pool)))
    rows_rng = random.Random(args.seed + 1)
    eval_gen = torch.Generator().manual_seed(args.seed + 2)

    def pair(n: int, span: int, gen: torch.Generator) -> torch.Tensor:
        half = pool[torch.randint(0, len(pool), (n, span), generator=gen)]
        return torch.cat([torch.zeros(n, 1, dtype=torch.long), half, half], 1)  # BOS = id 0

    def row() -> list[int]:
        ids = [0]
        while len(ids) < args.ctx:
            span = [int(pool[rows_rng.randrange(len(pool))])
                    for _ in range(rows_rng.randint(args.span_min, args.span_max))]  # fmt: skip
            ids += span + span + [0]
        return ids[: args.ctx]

    train_gen = torch.Generator().manual_seed(args.seed + 3)
    evaluation = pair(64, args.eval_span, eval_gen)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        if args.fixed_span:
            x = pair(args.rows, args.fixed_span, train_gen)
        else:
            x = torch.tensor([row() for _ in range(args.rows)])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % args.eval_every == 0:
            with torch.no_grad():
                logp = model(evaluation).logits.log_softmax(-1)[:, :-1]
            nll = -logp.gather(-1, evaluation[:, 1:, None])[..., 0]  # (64, 2 × span)
            s = args.eval_span
            first, second = nll[:, :s].mean(), nll[:, s + 1 :].mean()
            print(f"{step} {first:.2f} {second:.2f} {time.perf_counter() - start:.0f}", flush=True)


if __name__ == "__main__":
    main()
