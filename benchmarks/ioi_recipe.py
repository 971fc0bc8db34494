"""Which curriculum makes a small GPT-NeoX learn IOI: train one size, measure every checkpoint.

Reproduces the "What it takes for IOI to emerge" rows of docs/training.md. One size is trained
with :func:`circuit_atlas.training.train_suite` on the registry's corpus (``circuit-atlas data
fetch`` provides it) with the curriculum given on the command line (the evaluation's names
shared, templates held out, as in the demo), then at step 0 and every checkpoint from step 64
on it prints the clean metric of IOI (logit difference), Greater-Than (probability
difference) and Gendered Pronoun (logit difference) on the evaluation prompts, and the IOI
logit difference ``logit(IO) − logit(S)`` on 200 *curriculum* stories cut before their last
name ("held-in"): a model that learned the training stories but not the evaluation's has a
large held-in and a small evaluation value.

Usage (one thread; ≈ 5 minutes for tiny at 1000 × 16 × 128 tokens on this 2-core machine)::

    python benchmarks/ioi_recipe.py --out /tmp/ioi-a --fraction 0.9 --tasks ioi
    python benchmarks/ioi_recipe.py --out /tmp/ioi-b --fraction 0.9 --first ioi \\
        --first-steps 500 --tasks ioi:3,greater-than:3,gender-pronoun,sva
    python benchmarks/ioi_recipe.py --out /tmp/ioi-c --size small ...

Prints one line per checkpoint: ``step ioi greater_than gender_pronoun held_in_ioi
induction_2x60 prev_token`` (the last two: the best head's induction score on the demo's
2 × 60 repeated random tokens, and its previous-token score). ``--tied`` ties the input and
output embeddings (a patch of ``ModelSize.hf_config`` inside this script only).
"""

from __future__ import annotations

import argparse
import random
import time

import torch

import circuit_atlas as ca
from circuit_atlas.components.attention_scores import attention_scores
from circuit_atlas.data import corpus_paths
from circuit_atlas.tasks import evaluation_vocabulary
from circuit_atlas.training import TrainConfig, build_vocabulary, train_suite
from circuit_atlas.training.cli import _weighted, parse_curriculum
from circuit_atlas.training.curriculum import IOI_TEMPLATES, abba


def held_in_ioi(model, vocabulary, n: int = 200, seed: int = 123) -> float:
    """Mean ``logit(IO) − logit(S)`` (logits) after curriculum IOI stories cut before the IO."""
    rng = random.Random(seed)
    tok = model.tokenizer
    total = 0.0
    for _ in range(n):
        io, s = rng.sample(vocabulary.names_for_ioi, 2)
        template = rng.choice(IOI_TEMPLATES)
        if rng.random() < 0.5:  # ABBA, as the curriculum draws it
            template = abba(template)
        text = template.format(
            A=io, B=s, PLACE=rng.choice(vocabulary.places), OBJECT=rng.choice(vocabulary.objects)
        )
        ids = [tok.eos_token_id] + tok(text[: text.rfind(" " + io)])["input_ids"]
        with torch.no_grad():
            logits = model.forward(torch.tensor([ids]))[0, -1]
        (io_id,) = tok(" " + io)["input_ids"]
        (s_id,) = tok(" " + s)["input_ids"]
        total += float(logits[io_id] - logits[s_id])
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Suite directory (a new one per run).")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--tasks", default="greater-than:2,ioi:4,gender-pronoun,sva")
    parser.add_argument("--first", default="", help="Opening-phase weights, e.g. ioi.")
    parser.add_argument("--first-steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tied", action="store_true",
                        help="tie input and output embeddings (benchmark-only patch of "
                        "ModelSize.hf_config; docs/training.md, 2026-12-04)")  # fmt: skip
    parser.add_argument("--n-even", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=4096, help="BPE merges target")
    parser.add_argument("--wd", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument("--attn", default="", help="HF attention implementation (eager, sdpa)")
    parser.add_argument("--copy-init", action="store_true",
                        help="untied, the unembedding starting equal to the embedding")
    parser.add_argument("--phases", default="",
                        help="opening phases before the main mixture, e.g. "
                        "'450=repeated-spans:1;950=ioi:1' (steps < 450 draw only repeated "
                        "spans, steps < 950 only IOI; each task must be in --tasks)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tied:
        from circuit_atlas.training import ModelSize

        untied = ModelSize.hf_config

        def tied(self, vocab_size, **kw):
            cfg = untied(self, vocab_size, **kw)
            cfg.tie_word_embeddings = True
            return cfg

        ModelSize.hf_config = tied
    if args.copy_init or args.attn:
        from circuit_atlas.training import trainer

        plain_init = trainer._init_model

        def patched_init(*a, **kw):
            model = plain_init(*a, **kw)
            if args.copy_init:
                with torch.no_grad():
                    model.get_output_embeddings().weight.copy_(
                        model.get_input_embeddings().weight)
            if args.attn:
                model.set_attn_implementation(args.attn)
            return model

        trainer._init_model = patched_init
    if args.phases:
        from circuit_atlas.training.config import CurriculumConfig

        names = _weighted(args.tasks)[0]
        phases = []
        for part in args.phases.split(";"):
            end, spec = part.split("=")
            weights = dict(zip(*_weighted(spec), strict=True))
            phases.append((int(end), tuple(weights.get(n, 0.0) for n in names)))
        main_weights = CurriculumConfig.task_weights

        def phased(self, step=None):
            for end, weights in phases:
                if step is not None and step < end:
                    return weights
            return main_weights(self, step)

        CurriculumConfig.task_weights = phased
    config = TrainConfig(
        sizes=(args.size,),
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        n_even=args.n_even,
        lr=args.lr,
        seed=args.seed,
        weight_decay=args.wd,
        vocab_size=args.vocab,
        curriculum=parse_curriculum(
            args.fraction, args.tasks, "names", args.first, args.first_steps
        ),
    )
    start = time.time()
    manifest = train_suite(config, corpus_paths(), args.out)
    print(f"trained in {time.time() - start:.0f} s", flush=True)
    print("step ioi greater_than gender_pronoun held_in_ioi induction_2x60 prev_token",
          flush=True)  # fmt: skip
    vocabulary = build_vocabulary(evaluation_vocabulary(), ("names",))
    for step in manifest.sizes[args.size].steps:
        if 0 < step < 64:
            continue
        model = ca.load_model(path=f"{args.out}/{args.size}/step{step}")
        row = [step]
        for task in ("ioi", "greater-than", "gender-pronoun"):
            result = ca.behaviour(model, ca.make_dataset(task, model.tokenizer))
            row.append(round(float(result["clean"]["metric"]), 3))
        row.append(round(held_in_ioi(model, vocabulary), 3))
        scores = attention_scores(model, seq_len=60, batch=2)  # the demo's induction score
        row += [round(float(scores["induction"].max()), 3),
                round(float(scores["previous_token"].max()), 3)]  # fmt: skip
        print(*row, flush=True)


if __name__ == "__main__":
    main()
