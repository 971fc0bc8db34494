"""Paired clean/corrupted task datasets and the metrics read from them.

A task yields a :class:`TaskDataset`: clean and corrupted token batches of equal length per
example, the position where the metric is read (the last real token), and what the metric needs
(answer tokens for a logit difference, a signed token group for a probability difference).

The metrics reproduce ``utils/metrics.py`` of curt-tigges/circuits-over-time (PAPER.md §2):
``logit_diff`` is logit(answer) − logit(wrong) (mode ``simple``) and ``prob_diff`` is the
``group_sum`` probability difference Σ_k sign_k · P(token_k), with sign +1 for correct tokens
and −1 for wrong ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from circuit_atlas.errors import TaskDataError

__all__ = ["MetricKind", "TaskDataset", "behaviour_metrics", "metric_values"]

MetricKind = Literal["logit_diff", "prob_diff"]
"""The task metric: ``logit_diff`` (IOI, Gendered Pronoun) or ``prob_diff`` (Greater-Than, SVA)."""


@dataclass(frozen=True)
class TaskDataset:
    """Paired clean/corrupted prompts of one task, tokenized, with what the metric needs.

    Attributes:
        task: Registered task name (``ioi``, ``greater-than``, ``gender-pronoun``, ``sva``, ...).
        clean: Clean prompts, ``(n, pos)`` int64, right-padded with ``pad_id``.
        corrupted: Corrupted prompts, ``(n, pos)`` int64; example i has the same length as its
            clean prompt.
        lengths: ``(n,)`` int64, real tokens per example; the metric is read at ``lengths - 1``.
        answer: ``(n,)`` int64, the correct answer token on the clean prompt (IOI: the IO name,
            Gendered Pronoun: the clean pronoun). For group metrics, a representative correct
            token (used only for rank-0 bookkeeping) or -1.
        wrong: ``(n,)`` int64, the wrong answer token (IOI: the S name) or -1.
        metric: Which metric the task reports (see module docstring).
        group_tokens: ``(k,)`` int64 token ids of the probability-difference group, or None.
        group_signs: ``(n, k)`` float32 in {+1, -1, 0}: +1 for a correct token of example i,
            -1 for a wrong one, 0 for a token that does not count. None for logit differences.
        clean_text: The clean prompts as strings (length n).
        corrupted_text: The corrupted prompts as strings (length n).
        pad_id: Padding token id.
        seed: Seed the dataset was generated with (None for fixed files).
        dropped: Items (names, nouns, verbs, rows) dropped because they were not single tokens
            for this tokenizer, or did not fit; reported to the user.
        info: Free-form provenance (template family, source files).
    """

    task: str
    clean: Tensor
    corrupted: Tensor
    lengths: Tensor
    answer: Tensor
    wrong: Tensor
    metric: MetricKind
    group_tokens: Tensor | None = None
    group_signs: Tensor | None = None
    clean_text: tuple[str, ...] = ()
    corrupted_text: tuple[str, ...] = ()
    pad_id: int = 0
    seed: int | None = None
    dropped: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.clean.shape[0]
        if self.clean.shape != self.corrupted.shape:
            raise TaskDataError(
                f"task {self.task!r}: clean shape {tuple(self.clean.shape)} != corrupted shape "
                f"{tuple(self.corrupted.shape)}"
            )
        for name in ("lengths", "answer", "wrong"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise TaskDataError(
                    f"task {self.task!r}: {name} has shape {tuple(t.shape)}, want ({n},)"
                )
        if n and (self.lengths.min() < 1 or self.lengths.max() > self.clean.shape[1]):
            raise TaskDataError(f"task {self.task!r}: lengths outside [1, {self.clean.shape[1]}]")
        if self.metric == "prob_diff":
            if self.group_tokens is None or self.group_signs is None:
                raise TaskDataError(
                    f"task {self.task!r}: prob_diff needs group_tokens and group_signs"
                )
            if self.group_signs.shape != (n, self.group_tokens.shape[0]):
                raise TaskDataError(
                    f"task {self.task!r}: group_signs shape {tuple(self.group_signs.shape)} != "
                    f"({n}, {self.group_tokens.shape[0]})"
                )

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    @property
    def metric_positions(self) -> Tensor:
        """``(n,)`` int64: the position at which the metric is read (``lengths - 1``)."""
        return self.lengths - 1

    def select(self, index: slice | Tensor) -> TaskDataset:
        """Return the examples at ``index`` (a slice or an index tensor) as a new dataset.

        The sequence dimension is trimmed to the longest selected example.
        """
        lengths = self.lengths[index]
        pos = int(lengths.max()) if lengths.numel() else 1
        idx = index if isinstance(index, slice) else index.tolist()

        def pick(seq: tuple[str, ...]) -> tuple[str, ...]:
            if not seq:
                return seq
            if isinstance(idx, slice):
                return tuple(seq[idx])
            return tuple(seq[i] for i in idx)

        return replace(
            self,
            clean=self.clean[index][:, :pos],
            corrupted=self.corrupted[index][:, :pos],
            lengths=lengths,
            answer=self.answer[index],
            wrong=self.wrong[index],
            group_signs=None if self.group_signs is None else self.group_signs[index],
            clean_text=pick(self.clean_text),
            corrupted_text=pick(self.corrupted_text),
        )

    def batches(self, batch_size: int) -> Iterator[TaskDataset]:
        """Yield consecutive sub-datasets of at most ``batch_size`` examples.

        Raises:
            ValueError: If ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.select(slice(start, start + batch_size))

    def to(self, device: torch.device | str) -> TaskDataset:
        """Return a copy with every tensor on ``device``."""
        return replace(
            self,
            clean=self.clean.to(device),
            corrupted=self.corrupted.to(device),
            lengths=self.lengths.to(device),
            answer=self.answer.to(device),
            wrong=self.wrong.to(device),
            group_tokens=None if self.group_tokens is None else self.group_tokens.to(device),
            group_signs=None if self.group_signs is None else self.group_signs.to(device),
        )


def metric_values(logits: Tensor, data: TaskDataset) -> Tensor:
    """Compute the task metric per example from the logits at the metric position.

    Args:
        logits: ``(n, vocab)`` logits at ``data.metric_positions`` (any float dtype; computed in
            float32).
        data: The dataset (or batch) the logits belong to.

    Returns:
        ``(n,)`` float32 (float64 for float64 logits): logit differences (logits) or
        probability differences (probabilities in [-1, 1]), depending on ``data.metric``.

    Source: ``compute_logit_diff`` / ``compute_probability_diff(mode="group_sum")`` in
    curt-tigges/circuits-over-time ``utils/metrics.py``.
    """
    if logits.dtype != torch.float64:
        logits = logits.float()
    if data.metric == "logit_diff":
        right = logits.gather(1, data.answer[:, None]).squeeze(1)
        wrong = logits.gather(1, data.wrong[:, None]).squeeze(1)
        return right - wrong
    probs = torch.softmax(logits, dim=-1)[:, data.group_tokens]  # (n, k)
    return (probs * data.group_signs.to(probs)).sum(-1)


def behaviour_metrics(logits: Tensor, data: TaskDataset) -> dict[str, float]:
    """Summarise task behaviour from the logits at the metric position (PAPER.md §2.5).

    Args:
        logits: ``(n, vocab)`` logits at the metric position.
        data: The dataset.

    Returns:
        ``metric`` (mean task metric), ``metric_std`` (standard deviation over examples),
        ``accuracy`` (fraction with metric > 0), ``rank0`` (fraction whose top-1 token is a
        correct answer), ``prob_mass`` (probability on the answer tokens: answer + wrong for
        logit-difference tasks, the whole group for probability-difference tasks), and
        ``logit_diff`` / ``prob_diff`` (both forms of the metric where they are defined).
    """
    logits = logits.float()
    values = metric_values(logits, data)
    probs = torch.softmax(logits, dim=-1)
    top = logits.argmax(-1)
    out: dict[str, float] = {
        "metric": float(values.mean()),
        "metric_std": float(values.std()) if len(values) > 1 else 0.0,
        "accuracy": float((values > 0).float().mean()),
    }
    if data.metric == "logit_diff":
        p_right = probs.gather(1, data.answer[:, None]).squeeze(1)
        p_wrong = probs.gather(1, data.wrong[:, None]).squeeze(1)
        out["rank0"] = float((top == data.answer).float().mean())
        out["prob_mass"] = float((p_right + p_wrong).mean())
        out["logit_diff"] = float(values.mean())
        out["prob_diff"] = float((p_right - p_wrong).mean())
    else:
        group = data.group_tokens
        signs = data.group_signs
        is_group = top[:, None] == group[None, :]  # (n, k)
        out["rank0"] = float((is_group & (signs > 0)).any(-1).float().mean())
        out["prob_mass"] = float(probs[:, group].sum(-1).mean())
        out["prob_diff"] = float(values.mean())
        lg = logits[:, group]
        pos = torch.where(signs > 0, lg, torch.nan).nanmean(-1)
        neg = torch.where(signs < 0, lg, torch.nan).nanmean(-1)
        out["logit_diff"] = float((pos - neg).nanmean())
    return out
