import os
import time

import pytest

from circuit_atlas.study.cache import CachePolicy, evict_checkpoints

MB = 1_000_000


def add_revision(cache, repo_id, ref, size, age_s):
    """Lay out one cached revision the way huggingface_hub does (blob + ref + snapshot link)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = f"{abs(hash((repo_id, ref))):040x}"[-40:]
    blob = repo / "blobs" / f"blob-{ref}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    with open(blob, "wb") as handle:
        handle.truncate(size)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    stamp = time.time() - age_s
    for path in (blob, snapshot / "model.safetensors", snapshot):
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    return commit


def cached(cache):
    from huggingface_hub import scan_cache_dir

    return sorted(
        f"{r.repo_id}@{ref}"
        for r in scan_cache_dir(cache).repos
        for rev in r.revisions
        for ref in rev.refs
    )


@pytest.fixture
def cache(tmp_path):
    cache = tmp_path / "hub"
    add_revision(cache, "EleutherAI/pythia-70m", "step1000", 3 * MB, age_s=3000)
    add_revision(cache, "EleutherAI/pythia-70m", "step2000", 3 * MB, age_s=2000)
    add_revision(cache, "EleutherAI/pythia-70m", "step3000", 3 * MB, age_s=10)
    add_revision(cache, "EleutherAI/pythia-160m", "step1000", 3 * MB, age_s=4000)
    add_revision(cache, "someone/else", "main", 50 * MB, age_s=9000)
    return cache


REPOS = ("EleutherAI/pythia-70m", "EleutherAI/pythia-160m")


def test_keep_deletes_nothing(cache):
    before = cached(cache)
    policy = CachePolicy(keep=True, repos=REPOS, cache_dir=str(cache))
    assert evict_checkpoints(policy, just_used=("EleutherAI/pythia-70m", "step2000")) == []
    assert cached(cache) == before


def test_budget_evicts_just_used_first_then_least_recent(cache):
    policy = CachePolicy(budget_gb=7 * MB / 1e9, repos=REPOS, cache_dir=str(cache))
    deleted = evict_checkpoints(policy, just_used=("EleutherAI/pythia-70m", "step3000"))
    assert deleted == ["EleutherAI/pythia-70m@step3000", "EleutherAI/pythia-160m@step1000"]
    assert cached(cache) == [
        "EleutherAI/pythia-70m@step1000",
        "EleutherAI/pythia-70m@step2000",
        "someone/else@main",
    ]


def test_zero_budget_spares_recent_and_foreign_revisions(cache):
    policy = CachePolicy(budget_gb=0, repos=REPOS, cache_dir=str(cache), grace_s=600)
    deleted = evict_checkpoints(policy, just_used=("EleutherAI/pythia-70m", "step1000"))
    assert deleted[0] == "EleutherAI/pythia-70m@step1000" and len(deleted) == 3
    # step3000 was modified 10 s ago (a concurrent worker may be loading it): spared.
    assert cached(cache) == ["EleutherAI/pythia-70m@step3000", "someone/else@main"]


def test_within_budget_deletes_nothing(cache):
    policy = CachePolicy(budget_gb=1.0, repos=REPOS, cache_dir=str(cache))
    assert evict_checkpoints(policy, just_used=("EleutherAI/pythia-70m", "step1000")) == []


def test_missing_cache_is_fine(tmp_path):
    policy = CachePolicy(repos=REPOS, cache_dir=str(tmp_path / "none"))
    assert evict_checkpoints(policy, just_used=("EleutherAI/pythia-70m", "step1")) == []
