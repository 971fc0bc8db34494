"""The data registry and its resolution order (no network; synthetic files where real ones are
not needed, the real data through ``require_data`` where they are)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from circuit_atlas.data import (
    CORPUS_FILES,
    PYTHIA_TOKENIZER_FILE,
    REGISTRY,
    DataFile,
    Source,
    cache_dir,
    corpus_paths,
    data_file,
    data_home,
    get,
    locate,
    resolve_data_dir,
    search_path,
    select,
    verify,
)
from circuit_atlas.data import registry as registry_module
from circuit_atlas.errors import DataIntegrityError, DataNotFoundError, UnknownNameError
from tests.conftest import SKIP_REASON, require_data


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Path:
    """No $CIRCUIT_ATLAS_DATA, an empty cache, and a working directory without ../shared."""
    monkeypatch.delenv("CIRCUIT_ATLAS_DATA", raising=False)
    monkeypatch.setenv("CIRCUIT_ATLAS_CACHE", str(tmp_path / "cache-root"))
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def synthetic(monkeypatch, name: str, content: bytes) -> DataFile:
    """Register a synthetic file (its own hash) for the duration of a test."""
    entry = DataFile(name, "tasks", Source("example/none", "0" * 40, name),
                     hashlib.sha256(content).hexdigest(), len(content), "test")  # fmt: skip
    monkeypatch.setitem(registry_module._BY_NAME, name, entry)
    return entry


def put(root: Path, name: str, content: bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------------- the registry
def test_registry_entries_are_pinned_and_well_formed():
    names = [f.name for f in REGISTRY]
    assert len(names) == len(set(names)) == 28
    for f in REGISTRY:
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.name
        assert re.fullmatch(r"[0-9a-f]{40}", f.source.commit), f.name  # a commit, not a branch
        assert f.source.url == (
            f"https://raw.githubusercontent.com/{f.source.repo}/{f.source.commit}/{f.source.path}"
        )
        assert f.size > 0 and f.licence and f.group in ("tasks", "tokenizer", "corpus")
    assert [f.name for f in select(groups=["corpus"])] == list(CORPUS_FILES) == sorted(CORPUS_FILES)
    assert sum(f.size for f in select(groups=["corpus"])) == 30_233_756
    derived = [f for f in REGISTRY if f.derived_from is not None]
    assert {f.source.repo for f in derived} == {"nltk/nltk_data"} and len(derived) == 6
    for f in derived:
        assert re.fullmatch(r"[0-9a-f]{64}", f.derived_from.sha256) and f.derived_from.size > 0
        assert f.source.path.endswith(".zip") and f.derived_from.rule in ("nltk-text", "nltk-brown")
    assert [f.name for f in select(groups=["tokenizer"])] == [PYTHIA_TOKENIZER_FILE]


def test_every_file_the_tasks_read_is_in_the_registry():
    from circuit_atlas.tasks.gender_pronoun import GENDER_PRONOUN_FILE
    from circuit_atlas.tasks.sva import SVA_CONDITIONS, SVA_DIR, VERB_FILE

    needed = [f"{SVA_DIR}/ML-{c}.csv" for c in SVA_CONDITIONS] + [VERB_FILE, GENDER_PRONOUN_FILE]
    for name in needed:
        assert get(name).group == "tasks"
    sva = [f for f in REGISTRY if f.name.startswith(f"{SVA_DIR}/ML-")]
    assert len(sva) == len(SVA_CONDITIONS) == 15
    assert all(f.source.repo == "hannamw/eap-ig-faithfulness" for f in sva)


def test_unknown_names_and_groups_are_refused():
    with pytest.raises(UnknownNameError, match="'tasks/nope.csv' is not a registry data file"):
        get("tasks/nope.csv")
    with pytest.raises(UnknownNameError, match=r"unknown data group\(s\) \['model'\]"):
        select(groups=["model"])
    assert select(names=[PYTHIA_TOKENIZER_FILE], groups=["corpus"]) == ()


def test_the_real_data_is_byte_identical_to_the_registry(data_dir):
    statuses = verify(data_dir)
    assert [s.status for s in statuses] == ["ok"] * len(REGISTRY)
    assert [s.actual for s in statuses] == [f.sha256 for f in REGISTRY]


def test_skip_reason_names_the_fetch_command():
    assert "`circuit-atlas data fetch`" in SKIP_REASON
    with pytest.raises(pytest.skip.Exception, match="circuit-atlas data fetch"):
        require_data()  # the isolated fixture hides every data location


# ----------------------------------------------------------------------------- locations
def test_cache_dir_from_env_or_platform(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache-root" / "data"
    monkeypatch.delenv("CIRCUIT_ATLAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert cache_dir() == tmp_path / "xdg" / "circuit-atlas" / "data"


def test_search_path_order_and_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUIT_ATLAS_DATA", str(tmp_path / "env"))
    order = search_path(tmp_path / "flag")
    assert [loc.origin for loc in order] == [
        "--data-dir", "$CIRCUIT_ATLAS_DATA", "cache", "../shared/data"
    ]  # fmt: skip
    assert [loc.path for loc in order] == [
        tmp_path / "flag", tmp_path / "env", tmp_path / "cache-root" / "data",
        tmp_path / "shared" / "data",
    ]  # fmt: skip
    assert data_home(tmp_path / "flag").path == tmp_path / "flag"
    assert data_home().origin == "$CIRCUIT_ATLAS_DATA"
    monkeypatch.delenv("CIRCUIT_ATLAS_DATA")
    assert data_home().origin == "cache"


def test_first_location_holding_the_file_wins(monkeypatch, tmp_path):
    entry = synthetic(monkeypatch, "tasks/x/a.csv", b"a,b\n1,2\n")
    roots = {
        "flag": tmp_path / "flag",
        "env": tmp_path / "env",
        "cache": tmp_path / "cache-root" / "data",
        "shared": tmp_path / "shared" / "data",
    }
    monkeypatch.setenv("CIRCUIT_ATLAS_DATA", str(roots["env"]))
    for key in ("shared", "cache", "env", "flag"):  # add from the back: each must take over
        put(roots[key], entry.name, b"a,b\n1,2\n")
        path, location = locate(entry.name, roots["flag"])
        assert path == roots[key] / entry.name
        assert data_file(entry.name, roots["flag"]) == path
    assert location.origin == "--data-dir"


def test_a_wrong_copy_is_an_error_not_skipped(monkeypatch, tmp_path):
    good = b"clean,corrupted\n"
    entry = synthetic(monkeypatch, "tasks/x/b.csv", good)
    put(tmp_path / "shared" / "data", entry.name, good)
    bad = put(tmp_path / "flag", entry.name, good[:-3])  # truncated
    actual = hashlib.sha256(good[:-3]).hexdigest()
    with pytest.raises(DataIntegrityError) as info:
        data_file(entry.name, tmp_path / "flag")
    message = str(info.value)
    assert entry.name in message and entry.sha256 in message and actual in message
    assert str(bad) in message and "13 bytes, expected 16" in message
    assert (info.value.expected, info.value.actual) == (entry.sha256, actual)


def test_same_size_rewrite_is_noticed(monkeypatch, tmp_path):
    entry = synthetic(monkeypatch, "tasks/x/c.csv", b"abcd")
    path = put(tmp_path / "flag", entry.name, b"abcd")
    assert data_file(entry.name, tmp_path / "flag") == path
    path.write_bytes(b"abce")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(DataIntegrityError, match="expected sha256"):
        data_file(entry.name, tmp_path / "flag")


def test_missing_everywhere_names_file_source_places_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUIT_ATLAS_DATA", str(tmp_path / "nowhere"))
    name = "tasks/sva/ML-simple_agrmt_all.csv"
    with pytest.raises(DataNotFoundError) as info:
        data_file(name)
    message = str(info.value)
    assert f"'{name}' not found in any data location" in message
    assert "$CIRCUIT_ATLAS_DATA" in message and "(does not exist)" in message
    assert "cache" in message and "../shared/data" in message
    assert get(name).source.url in message
    assert "`circuit-atlas data fetch`" in message and "--from DIR" in message


def test_resolve_data_dir_wants_one_location_with_every_file(monkeypatch, tmp_path):
    a = synthetic(monkeypatch, "tasks/x/a.csv", b"1")
    b = synthetic(monkeypatch, "tasks/x/b.csv", b"2")
    put(tmp_path / "flag", a.name, b"1")  # only one of the two
    for content, entry in ((b"1", a), (b"2", b)):
        put(tmp_path / "shared" / "data", entry.name, content)
    names = [a.name, b.name]
    assert resolve_data_dir(tmp_path / "flag", names) == tmp_path / "shared" / "data"
    assert resolve_data_dir(tmp_path / "flag", [a.name]) == tmp_path / "flag"
    with pytest.raises(DataNotFoundError, match="not found in any data location"):
        resolve_data_dir(names=["tasks/gender-pronoun/gender-pronoun.csv"])


def test_corpus_paths_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="corpus/abc.txt"):
        corpus_paths(tmp_path / "empty")


def test_corpus_paths_are_the_registry_corpus_in_order(data_dir):
    assert corpus_paths(data_dir) == [data_dir / name for name in CORPUS_FILES]


def test_corpus_files_takes_a_list_in_its_order(tmp_path):
    from circuit_atlas.training.data import corpus_files, corpus_source

    b = put(tmp_path, "b.txt", b"b\n")
    a = put(tmp_path, "a.txt", b"a\n")
    assert corpus_files([b, a]) == [b, a]
    assert corpus_files(tmp_path) == [a, b]
    assert corpus_source([b, a]) == [str(b.resolve()), str(a.resolve())]
    with pytest.raises(DataNotFoundError, match="corpus file .*c.txt' does not exist"):
        corpus_files([a, tmp_path / "c.txt"])
    with pytest.raises(DataNotFoundError, match="empty list"):
        corpus_files([])
