"""Hub revisions: how a branch name maps to a training step, and where the branch list comes from.

A checkpoint suite on the Hugging Face hub publishes its intermediate checkpoints as branches of
one repository, each named by a suite-specific pattern (Pythia ``step143000``, OLMo
``step20000-tokens84B``, Stanford CRFM ``checkpoint-400000``, ...). A :class:`RevisionScheme`
is one such pattern: a regular expression with a ``step`` group (and, where the name carries it,
a ``tokens_b`` group of billions of tokens seen). :data:`REVISION_SCHEMES` holds them all.

The branch list itself is never guessed. :func:`list_repo_revisions` asks the hub
(``huggingface_hub.list_repo_refs``) and caches the answer as JSON in a revisions directory (a
study keeps it with its results, ``<results>/revisions/``); later calls, and offline calls
(``HF_HUB_OFFLINE=1``), read that cache. When there is no cached list and the hub cannot be
asked, the revisions present in the local hub cache (``models--org--name/refs/``) are used, with
a warning that this is only what was downloaded; with none of the three it raises
:class:`~circuit_atlas.errors.RevisionListError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from circuit_atlas.errors import ModelSourceError, RevisionListError, UnknownNameError

__all__ = [
    "REVISION_SCHEMES",
    "HubCheckpoint",
    "RevisionList",
    "RevisionScheme",
    "default_revisions_dir",
    "get_revision_scheme",
    "list_repo_revisions",
    "resolve_hub_cache",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

TOKENS_PER_B = 1_000_000_000
"""Tokens in the ``B`` of a revision name such as ``tokens84B``."""

_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class HubCheckpoint:
    """One checkpoint of a hub suite.

    Attributes:
        step: Training step (optimiser steps; for LLM360 Amber, the checkpoint index).
        revision: The hub branch holding it.
        tokens: Training tokens seen at ``step`` when known: ``step × tokens_per_step`` when the
            suite publishes its tokens per step, else the (rounded) count in the branch name,
            else None.
    """

    step: int
    revision: str
    tokens: int | None


@dataclass(frozen=True)
class RevisionScheme:
    """How a suite names its checkpoint branches.

    Attributes:
        name: Registry key.
        pattern: Regular expression matched against the whole branch name; its ``step`` group
            is the training step and its optional ``tokens_b`` group the billions of tokens
            seen that the name records (rounded by the publisher).
        example: A branch name of this form (tests check that it parses).
        source: Where the pattern was read (model card).
        preferred_prefix: When two branches name the same step, the one with this prefix is
            kept (OLMo 2 has ``stage1-step150-tokens1B`` next to ``step150-tokens1B``); with no
            prefix, or neither or both having it, the ambiguity is an error.
    """

    name: str
    pattern: str
    example: str
    source: str
    preferred_prefix: str = ""

    def parse(self, revision: str) -> tuple[int, int | None] | None:
        """Return ``(step, tokens from the name or None)``, or None if the name does not match."""
        match = re.fullmatch(self.pattern, revision)
        if match is None:
            return None
        tokens_b = match.groupdict().get("tokens_b")
        return int(match.group("step")), None if tokens_b is None else int(tokens_b) * TOKENS_PER_B

    def checkpoints(self, branches: Iterable[str], tokens_per_step: int | None = None
                    ) -> list[HubCheckpoint]:
        """The checkpoints among ``branches`` (others, such as ``main``, are skipped), by step.

        Args:
            branches: Branch names of the repository.
            tokens_per_step: Training tokens per optimiser step, when published; it takes
                precedence over the rounded count in the name.

        Raises:
            ModelSourceError: If two branches name the same step (the message names both).
        """
        by_step: dict[int, HubCheckpoint] = {}
        for branch in sorted(set(branches)):
            parsed = self.parse(branch)
            if parsed is None:
                continue
            step, named_tokens = parsed
            tokens = step * tokens_per_step if tokens_per_step is not None else named_tokens
            if step in by_step:
                kept = by_step[step].revision
                prefix = self.preferred_prefix
                if prefix and kept.startswith(prefix) != branch.startswith(prefix):
                    if branch.startswith(prefix):
                        by_step[step] = HubCheckpoint(step, branch, tokens)
                    continue
                raise ModelSourceError(
                    f"branches {by_step[step].revision!r} and {branch!r} both name step {step} "
                    f"(revision scheme {self.name!r}); pass the revision explicitly"
                )
            by_step[step] = HubCheckpoint(step, branch, tokens)
        return [by_step[s] for s in sorted(by_step)]


REVISION_SCHEMES: Mapping[str, RevisionScheme] = types.MappingProxyType({
    s.name: s
    for s in (
        RevisionScheme("step", r"step(?P<step>\d+)", "step143000",
                       "EleutherAI/pythia-* and PolyPythias model cards (154 step{N} branches)"),
        RevisionScheme("step-tokens", r"step(?P<step>\d+)-tokens(?P<tokens_b>\d+)B",
                       "step20000-tokens84B", "allenai/OLMo-1B model card ('step1000-tokens4B')"),
        RevisionScheme("stage1-step-tokens",
                       r"(?:stage1-)?step(?P<step>\d+)-tokens(?P<tokens_b>\d+)B",
                       "stage1-step120000-tokens252B",
                       "allenai/OLMo-2-1124-7B card and discussion #6 (pretraining branches with "
                       "and without the stage1- prefix; stage2-ingredient* soups are not matched)",
                       preferred_prefix="stage1-"),
        RevisionScheme("checkpoint", r"checkpoint-(?P<step>\d+)", "checkpoint-400000",
                       "stanford-crfm/*-gpt2-* commit history ('checkpoint-N contents')"),
        RevisionScheme("step-dash", r"step-(?P<step>\d+)", "step-125000",
                       "HuggingFaceTB/SmolLM2-*-intermediate-checkpoints model cards"),
        RevisionScheme("ckpt", r"ckpt_(?P<step>\d+)", "ckpt_356",
                       "LLM360/Amber model card (ckpt_000 ... ckpt_359)"),
    )
})
"""Every branch-name scheme by name."""


def get_revision_scheme(name: str) -> RevisionScheme:
    """Look up a :class:`RevisionScheme`.

    Raises:
        UnknownNameError: For an unknown name; the message lists the valid ones.
    """
    try:
        return REVISION_SCHEMES[name]
    except KeyError:
        raise UnknownNameError(f"unknown revision scheme {name!r}; valid: "
                               f"{', '.join(REVISION_SCHEMES)}") from None


# --- the branch list -------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionList:
    """The branches of one hub repository and where the list came from.

    Attributes:
        repo_id: The repository (``org/name``).
        branches: Branch names, sorted.
        source: ``hub`` (asked just now), ``cache`` (the revisions cache) or ``hub-cache`` (the
            revisions downloaded into the local hub cache: possibly only some of them).
        fetched_at: When the hub was asked (ISO 8601, UTC), None for ``hub-cache``.
        path: The revisions-cache file read or written, None for ``hub-cache``.
    """

    repo_id: str
    branches: tuple[str, ...]
    source: Literal["hub", "cache", "hub-cache"]
    fetched_at: str | None = None
    path: str | None = None


def default_revisions_dir() -> Path:
    """The revisions cache used outside a study: ``<user cache>/circuit-atlas/revisions``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("circuit-atlas")) / "revisions"


def _offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(flag.strip().lower() in _TRUE for flag in flags)


def _cache_file(revisions_dir: Path, repo_id: str) -> Path:
    return revisions_dir / (repo_id.replace("/", "--") + ".json")


def _read_cache(path: Path, repo_id: str) -> RevisionList | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        branches = tuple(sorted(str(b) for b in data["branches"]))
        if data.get("repo_id") != repo_id:
            raise ValueError(f"it lists repository {data.get('repo_id')!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RevisionListError(f"revision cache {str(path)!r} of {repo_id} is unreadable: {err}; "
                                "delete it to ask the hub again") from err
    return RevisionList(repo_id, branches, "cache", data.get("fetched_at"), str(path))


def _write_cache(path: Path, listing: RevisionList) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    payload = {"repo_id": listing.repo_id, "fetched_at": listing.fetched_at,
               "source": "huggingface_hub.list_repo_refs", "branches": list(listing.branches)}
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader never sees half a list


def _hub_cache_refs(hub_cache_dir: Path, repo_id: str) -> tuple[str, ...]:
    refs = hub_cache_dir / ("models--" + repo_id.replace("/", "--")) / "refs"
    if not refs.is_dir():
        return ()
    return tuple(sorted(p.name for p in refs.iterdir() if p.is_file()))  # refs/pr/* are dirs


def _ask_hub(repo_id: str) -> tuple[str, ...]:
    from huggingface_hub import list_repo_refs

    return tuple(sorted(ref.name for ref in list_repo_refs(repo_id).branches))


def list_repo_revisions(
    repo_id: str,
    *,
    revisions_dir: PathLike | None = None,
    hub_cache_dir: PathLike | None = None,
    refresh: bool = False,
) -> RevisionList:
    """The branches of a hub repository: from the revisions cache, the hub, or the hub cache.

    Order: the cached list in ``revisions_dir`` (unless ``refresh``); else, when online,
    ``huggingface_hub.list_repo_refs`` (the answer is written to the cache); else the revisions
    present in the local hub cache, with a warning (they may be only part of the suite).

    Args:
        repo_id: Hub repository, ``org/name``.
        revisions_dir: Directory of the cached lists (default :func:`default_revisions_dir`).
        hub_cache_dir: The Hugging Face hub cache (default ``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
            the library default).
        refresh: Ask the hub even if a cached list exists (fails offline).

    Returns:
        The :class:`RevisionList`.

    Raises:
        RevisionListError: When no source has the list (names the repository, the cache file
            and whether the hub was reachable), when ``refresh`` is asked offline, or when the
            cached file is unreadable.
    """
    from huggingface_hub.errors import HfHubHTTPError

    root = default_revisions_dir() if revisions_dir is None else Path(revisions_dir).expanduser()
    path = _cache_file(root, repo_id)
    offline = _offline()
    if refresh and offline:
        raise RevisionListError(f"cannot refresh the revisions of {repo_id}: offline mode "
                                "(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)")
    cached = None if refresh else _read_cache(path, repo_id)
    if cached is not None:
        return cached
    why = "offline mode"
    if not offline:
        try:
            branches = _ask_hub(repo_id)
        except (OSError, ValueError, HfHubHTTPError) as err:  # network down, unknown repo, ...
            why = f"the hub could not be asked ({type(err).__name__}: {err})"
            logger.warning("cannot list the branches of %s: %s", repo_id, err)
        else:
            listing = RevisionList(repo_id, branches, "hub",
                                   datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   str(path))
            _write_cache(path, listing)
            return listing
    hub_cache = Path(hub_cache_dir or resolve_hub_cache(None) or _library_hub_cache())
    local = _hub_cache_refs(hub_cache, repo_id)
    if local:
        logger.warning("%s: no cached branch list and %s; using the %d revisions in the hub "
                       "cache %s (only what was downloaded)", repo_id, why, len(local), hub_cache)
        return RevisionList(repo_id, local, "hub-cache")
    raise RevisionListError(
        f"the revisions of {repo_id} are unknown: no cached list at {str(path)!r}, {why}, and no "
        f"revision of it in the hub cache {str(hub_cache)!r}; run once online (or copy the "
        "revisions file there) so that circuit-atlas never guesses a branch name"
    )


def resolve_hub_cache(cache_dir: str | os.PathLike | None) -> str | None:
    """The Hugging Face hub cache to read.

    ``cache_dir``, else ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else None (the library
    default, ``~/.cache/huggingface/hub``).
    """
    if cache_dir is not None:
        return str(Path(cache_dir).expanduser())
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None



def _library_hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE
