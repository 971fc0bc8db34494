"""Fetching for real, against an HTTP server on 127.0.0.1: pooch downloads, hash checks, a
corrupted and an interrupted download, a second run served from the cache with the server
stopped, imports of a local copy, and the ``data`` CLI. Synthetic files with their own hashes
where the real ones are not needed; the real registry (served from the local copy) where they
are, skipping without it."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuit_atlas.cli import app
from circuit_atlas.data import DataFile, Source, ensure, fetch, import_from, select, verify
from circuit_atlas.errors import DataFetchError, DataIntegrityError, DataNotFoundError


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; ``/cut/<name>`` sends half a file under the full Content-Length."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self.path.startswith("/cut/"):
            super().do_GET()
            return
        data = (Path(self.directory) / self.path[len("/cut/"):]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


class Server:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving ``root``."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> None:
    """No $CIRCUIT_ATLAS_DATA, an empty cache, no ../shared next to the working directory."""
    monkeypatch.delenv("CIRCUIT_ATLAS_DATA", raising=False)
    monkeypatch.setenv("CIRCUIT_ATLAS_CACHE", str(tmp_path / "cache-root"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")


FILES = {
    "tasks/synthetic/rows.csv": b"clean,corrupted\n" + b"So Anna is here,So Mark is here\n" * 200,
    "corpus/synthetic.txt": "Ünïcode text, line one.\n".encode() * 5000,  # 125 kB
}


def entry(name: str, content: bytes) -> DataFile:
    return DataFile(name, "tasks", Source("example/none", "0" * 40, name),
                    hashlib.sha256(content).hexdigest(), len(content), "test")  # fmt: skip


ENTRIES = [entry(name, content) for name, content in FILES.items()]


def lay_out(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


@pytest.fixture
def served(tmp_path) -> Iterator[Server]:
    server = Server(lay_out(tmp_path / "www", FILES))
    yield server
    server.stop()


def leftovers(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ----------------------------------------------------------------------------- downloads
def test_download_is_checked_then_the_cache_serves_without_the_server(served, tmp_path):
    home = tmp_path / "home"
    results = fetch(ENTRIES, data_dir=home, mirror=served.url)
    assert [r.action for r in results] == ["downloaded", "downloaded"]
    for r in results:
        assert r.path == home / r.entry.name and r.path.read_bytes() == FILES[r.entry.name]
    assert leftovers(home) == sorted(r.path for r in results)  # no temporary files left

    served.stop()
    again = fetch(ENTRIES, data_dir=home, mirror=served.url)
    assert [r.action for r in again] == ["cached", "cached"]
    assert ensure(ENTRIES, data_dir=home, mirror=served.url) == [r.path for r in results]


def test_default_home_is_the_cache(served, tmp_path):
    results = fetch(ENTRIES[:1], mirror=served.url)
    assert results[0].path == tmp_path / "cache-root" / "data" / ENTRIES[0].name


def test_a_corrupted_download_is_rejected_and_nothing_kept(tmp_path):
    name = "tasks/synthetic/rows.csv"
    corrupted = FILES[name].replace(b"Anna", b"Anne", 1)
    server = Server(lay_out(tmp_path / "www", {name: corrupted}))
    home = tmp_path / "home"
    try:
        with pytest.raises(DataIntegrityError) as info:
            fetch([ENTRIES[0]], data_dir=home, mirror=server.url)
    finally:
        server.stop()
    error = info.value
    assert error.name == name and error.expected == ENTRIES[0].sha256
    assert error.actual == hashlib.sha256(corrupted).hexdigest()
    assert error.expected in str(error) and error.actual in str(error) and name in str(error)
    assert leftovers(home) == []


def test_an_interrupted_download_is_not_used(served, tmp_path):
    home = tmp_path / "home"
    cut = served.url + "/cut"
    with pytest.raises(DataFetchError, match="could not download 'tasks/synthetic/rows.csv'"):
        fetch([ENTRIES[0]], data_dir=home, mirror=cut)
    assert leftovers(home) == []
    # a good copy is never replaced by a cut one: a stale wrong copy stays until a good download
    stale = lay_out(home, {ENTRIES[1].name: b"old"}) / ENTRIES[1].name
    with pytest.raises(DataFetchError):
        fetch([ENTRIES[1]], data_dir=home, mirror=cut)
    assert stale.read_bytes() == b"old" and leftovers(home) == [stale]
    assert fetch([ENTRIES[1]], data_dir=home, mirror=served.url)[0].action == "downloaded"
    assert stale.read_bytes() == FILES[ENTRIES[1].name]


def test_a_short_file_is_a_hash_error(tmp_path):
    name = "corpus/synthetic.txt"
    server = Server(lay_out(tmp_path / "www", {name: FILES[name][:1000]}))
    try:
        with pytest.raises(DataIntegrityError, match="expected sha256 " + ENTRIES[1].sha256):
            fetch([ENTRIES[1]], data_dir=tmp_path / "home", mirror=server.url)
    finally:
        server.stop()
    assert leftovers(tmp_path / "home") == []


def test_http_errors_and_no_server_name_the_file_and_the_offline_fix(served, tmp_path):
    with pytest.raises(DataFetchError, match=r"404.*--from DIR"):
        fetch([ENTRIES[0]], data_dir=tmp_path / "home", mirror=served.url + "/nothing-here")
    url = served.url
    served.stop()
    with pytest.raises(DataFetchError, match=f"from {url}/tasks/synthetic/rows.csv"):
        fetch([ENTRIES[0]], data_dir=tmp_path / "home", mirror=url)
    assert leftovers(tmp_path / "home") == []


def test_ensure_downloads_only_what_resolves_nowhere(served, tmp_path):
    flag = lay_out(tmp_path / "flag", {ENTRIES[0].name: FILES[ENTRIES[0].name]})
    paths = ensure(ENTRIES, data_dir=flag, mirror=served.url)
    assert paths == [flag / e.name for e in ENTRIES]
    served.stop()  # both now resolve: no network needed
    assert ensure(ENTRIES, data_dir=flag, mirror=served.url) == paths


# ------------------------------------------------------------------------------- imports
def test_import_checks_every_hash_before_copying(tmp_path):
    bad = dict(FILES)
    bad["corpus/synthetic.txt"] = b"foreign file"
    home = tmp_path / "home"
    with pytest.raises(DataIntegrityError, match="'corpus/synthetic.txt'.*Nothing was imported"):
        import_from(lay_out(tmp_path / "bad", bad), ENTRIES, data_dir=home)
    assert leftovers(home) == []  # the good first file was not copied either

    source = lay_out(tmp_path / "good", FILES)
    assert [r.action for r in import_from(source, ENTRIES, data_dir=home)] == ["imported"] * 2
    assert [s.status for s in verify(home, ENTRIES)] == ["ok", "ok"]
    assert [r.action for r in import_from(tmp_path / "bad", ENTRIES, data_dir=home)] == [
        "cached", "cached"
    ]  # fmt: skip  (already verified at home: the bad source is not read)


def test_import_names_missing_files_and_copies_nothing(tmp_path):
    partial = lay_out(tmp_path / "partial", {ENTRIES[0].name: FILES[ENTRIES[0].name]})
    with pytest.raises(DataNotFoundError, match=r"1 file\(s\) needed .*corpus/synthetic.txt"):
        import_from(partial, ENTRIES, data_dir=tmp_path / "home")
    assert leftovers(tmp_path / "home") == []
    with pytest.raises(DataNotFoundError, match="is not a directory"):
        import_from(tmp_path / "nowhere", ENTRIES, data_dir=tmp_path / "home")


# ------------------------------------------------------------- the real registry and the CLI
@pytest.fixture
def real_server(data_dir) -> Iterator[Server]:
    server = Server(data_dir)
    yield server
    server.stop()


def test_real_files_download_from_a_mirror_of_the_local_copy(real_server, data_dir, tmp_path):
    small = [e for e in select(groups=["tasks"]) if e.size < 10_000]
    home = tmp_path / "home"
    results = fetch(small, data_dir=home, mirror=real_server.url)
    assert {r.action for r in results} == {"downloaded"} and len(results) >= 4
    for r in results:
        assert r.path.read_bytes() == (data_dir / r.entry.name).read_bytes()


def test_cli_fetch_verify_where(real_server, data_dir, tmp_path):
    runner = CliRunner()
    home = tmp_path / "home"
    out = runner.invoke(app, ["data", "fetch", "--data-dir", str(home), "--group", "tasks",
                              "--mirror", real_server.url, "--no-progress"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.count("downloaded") == 18 and "18 file(s)" in out.output

    out = runner.invoke(app, ["data", "verify", "--data-dir", str(home), "--group", "tasks"])
    assert out.exit_code == 0 and "all 18 file(s) verified" in out.output
    nouns = home / "tasks/greater-than/potential_nouns.txt"
    nouns.write_text("not the nouns\n")
    out = runner.invoke(app, ["data", "verify", "--data-dir", str(home), "--group", "tasks"])
    expected = select(names=["tasks/greater-than/potential_nouns.txt"])[0].sha256
    actual = hashlib.sha256(b"not the nouns\n").hexdigest()
    assert out.exit_code == 1 and f"expected sha256 {expected}, got {actual}" in out.output

    out = runner.invoke(app, ["data", "where", "--data-dir", str(home)])
    assert out.exit_code == 1  # the tokenizer and corpus resolve nowhere, the nouns are wrong
    assert "tasks/sva/combined_verb_list.csv: " + str(home) in out.output
    assert "tasks/greater-than/potential_nouns.txt: WRONG FILE" in out.output
    assert "corpus/shakespeare.txt: missing (from https://raw.githubusercontent.com/" in out.output

    out = runner.invoke(app, ["data", "fetch", "--from", str(data_dir), "--data-dir", str(home)])
    assert out.exit_code == 0, out.output
    assert out.output.count("imported") == 11 and out.output.count("cached") == 17
    out = runner.invoke(app, ["data", "where", "--data-dir", str(home)])
    assert out.exit_code == 0 and out.output.count("[--data-dir]") == 28


def test_cli_errors_exit_2_with_the_message(tmp_path):
    out = CliRunner().invoke(app, ["data", "fetch", "--from", str(tmp_path / "nowhere")])
    assert out.exit_code == 2 and "is not a directory" in out.output
    out = CliRunner().invoke(app, ["data", "fetch", "--group", "models"])
    assert out.exit_code == 2 and "unknown data group(s) ['models']" in out.output
