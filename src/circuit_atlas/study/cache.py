"""Evict downloaded checkpoints from the Hugging Face cache under a disk budget.

A study over Pythia downloads one checkpoint per unit (2 bytes per parameter: 5.6 GB for 2.8b).
After a unit, :func:`evict_checkpoints` deletes cached revisions of the study's repositories
until their total size is within the budget: first the revision just used, then the least
recently modified others. Revisions modified in the last ``grace_s`` seconds (other than the one
just used) are spared, because a concurrent worker on the same host may be loading them. Local
suites and local checkpoints are never in the hub cache, so they are never deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

__all__ = ["CachePolicy", "evict_checkpoints"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachePolicy:
    """What to keep in the Hugging Face cache.

    Attributes:
        keep: Keep every downloaded checkpoint (``--keep-checkpoints``); nothing is deleted.
        budget_gb: Disk budget, in GB (1e9 bytes), for the cached revisions of ``repos``
            (``--cache-budget``); 0 deletes each checkpoint right after its unit.
        repos: Hub repositories the policy may delete from (the study's); others are untouched.
        cache_dir: Hub cache directory (None: the Hugging Face default / ``$HF_HUB_CACHE``).
        grace_s: Revisions modified this recently are spared (except the one just used).
    """

    keep: bool = False
    budget_gb: float = 0.0
    repos: tuple[str, ...] = ()
    cache_dir: str | None = None
    grace_s: float = 600.0


def evict_checkpoints(policy: CachePolicy, *, just_used: tuple[str, str] | None = None
                      ) -> list[str]:
    """Delete cached revisions until the study's repositories fit in the budget.

    Args:
        policy: The cache policy.
        just_used: ``(repo_id, revision)`` of the checkpoint whose unit just finished; it is
            evicted first.

    Returns:
        The deleted revisions, as ``repo_id@ref`` strings.
    """
    if policy.keep:
        return []
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    repos = set(policy.repos) | ({just_used[0]} if just_used else set())
    budget = policy.budget_gb * 1e9
    deleted: list[str] = []
    while True:
        try:
            info = scan_cache_dir(policy.cache_dir)
        except CacheNotFound:
            return deleted
        mine = [repo for repo in info.repos if repo.repo_type == "model" and repo.repo_id in repos]
        if sum(repo.size_on_disk for repo in mine) <= budget:
            return deleted
        victim = _next_victim(mine, just_used, policy.grace_s)
        if victim is None:
            return deleted
        repo, rev = victim
        strategy = info.delete_revisions(rev.commit_hash)
        strategy.execute()
        name = f"{repo.repo_id}@{','.join(sorted(rev.refs)) or rev.commit_hash[:8]}"
        deleted.append(name)
        logger.info("evicted %s from the hub cache (%.2f GB freed)", name,
                    strategy.expected_freed_size / 1e9)


def _next_victim(repos, just_used, grace_s):
    now = time.time()
    best, best_key = None, None
    for repo in repos:
        for rev in repo.revisions:
            first = just_used is not None and repo.repo_id == just_used[0] and (
                just_used[1] in rev.refs)
            if not first and now - rev.last_modified < grace_s:
                continue
            key = (0 if first else 1, rev.last_modified)
            if best_key is None or key < best_key:
                best, best_key = (repo, rev), key
    return best
