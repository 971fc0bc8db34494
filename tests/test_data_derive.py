"""Files rebuilt from a pinned archive: the two rules on hand-made archives, and the fetch path
end to end against a raw-file server on 127.0.0.1 (archive hash, rebuilt hash, nothing kept on
failure)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from circuit_atlas.data import DataFile, Source, fetch
from circuit_atlas.data.derive import derive, nltk_brown, nltk_text
from circuit_atlas.data.registry import Derivation
from circuit_atlas.errors import DataIntegrityError
from tests.test_data_fetch import Server, isolated, leftovers  # noqa: F401 (autouse fixture)


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


TEXT_ZIP = {
    "corp/README": b"not text",
    "corp/b.txt": b"second\r\nfile\r\n",
    "corp/a.txt": b"first caf\xe9 \xc3\xa9\rend",  # a Latin-1 byte, a UTF-8 char, a lone CR
    "corp/sub/c.txt": b"third\n",
}
TEXT = "first caf\ufffd \u00e9\nend\n\nsecond\nfile\n\n\nthird\n"

BROWN_ZIP = {
    "brown/README": b"x",
    "brown/cats.txt": b"ca01 news",
    "brown/cb01": b"\n\n\tThe/at end/nn ./.\n",
    "brown/ca01": (b"\n\n\t``/`` No/at ,/, he/pps said/vbd ''/'' ./.\n\n\n"
                   b"\tIt/pps works/vbz ;/. (/( 1/cd )/) ``/`` ./.\n"),
}  # fmt: skip
BROWN = '"No, he said".\nIt works; ( 1 ) ``.\nThe end.\n'


def test_nltk_text_joins_sorted_txt_members_normalised():
    with zipfile.ZipFile(io.BytesIO(make_zip(TEXT_ZIP))) as archive:
        assert nltk_text(archive) == TEXT


def test_nltk_brown_untags_and_detokenises_one_sentence_per_line():
    with zipfile.ZipFile(io.BytesIO(make_zip(BROWN_ZIP))) as archive:
        assert nltk_brown(archive) == BROWN


def derived_entry(host: str, archive: bytes, text: str, rule="nltk-text") -> DataFile:
    data = text.encode()
    return DataFile(
        "corpus/synthetic.txt", "corpus", Source("someone/data", "a" * 40, "pkg/corp.zip", host),
        hashlib.sha256(data).hexdigest(), len(data), "test",
        Derivation(rule, hashlib.sha256(archive).hexdigest(), len(archive)),
    )  # fmt: skip


def serve_archive(root: Path, archive: bytes) -> Server:
    path = root / "someone/data" / ("a" * 40) / "pkg/corp.zip"
    path.parent.mkdir(parents=True)
    path.write_bytes(archive)
    return Server(root)


def test_fetch_downloads_the_archive_and_keeps_only_the_rebuilt_file(tmp_path):
    archive = make_zip(TEXT_ZIP)
    server = serve_archive(tmp_path / "www", archive)
    entry = derived_entry(server.url, archive, TEXT)
    assert entry.source.url.startswith("http://127.0.0.1:")
    home = tmp_path / "home"
    try:
        [result] = fetch([entry], data_dir=home)
    finally:
        server.stop()
    assert result.action == "downloaded" and result.path.read_text() == TEXT
    assert leftovers(home) == [result.path]  # the archive and temporary files are gone
    assert fetch([entry], data_dir=home)[0].action == "cached"  # server stopped


def test_a_wrong_archive_or_a_wrong_rebuild_keeps_nothing(tmp_path):
    archive = make_zip(TEXT_ZIP)
    server = serve_archive(tmp_path / "www", archive)
    home = tmp_path / "home"
    try:
        wrong_archive = derived_entry(server.url, archive + b"x", TEXT)
        with pytest.raises(DataIntegrityError, match=r"archive pkg/corp.zip.*expected sha256"):
            fetch([wrong_archive], data_dir=home)
        assert leftovers(home) == []
        wrong_text = derived_entry(server.url, archive, TEXT + "changed upstream")
        with pytest.raises(DataIntegrityError, match="rule 'nltk-text' did not rebuild") as info:
            fetch([wrong_text], data_dir=home)
        assert info.value.actual == hashlib.sha256(TEXT.encode()).hexdigest()
        assert leftovers(home) == []
    finally:
        server.stop()


def test_derive_refuses_a_plain_file(tmp_path):
    plain = DataFile("tasks/x.csv", "tasks", Source("a/b", "0" * 40, "x.csv"), "0" * 64, 1, "t")
    with pytest.raises(ValueError, match="'tasks/x.csv' is not rebuilt from an archive"):
        derive(plain, tmp_path / "a.zip", tmp_path / "out.txt")
