"""Multi30k fetcher: checksums, skipping, atomic writes and error messages, all without network."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from seq2seq.corpora import multi30k
from seq2seq.corpora.multi30k import BASE_URL, LANGS, SPLITS, download_multi30k, multi30k_paths
from seq2seq.errors import Seq2SeqError

LINES = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}


@pytest.fixture(scope="module")
def downloaded(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """One full run from the mirror, shared by the tests that only read its output."""
    dest = tmp_path_factory.mktemp("multi30k")
    return dest, download_multi30k(dest, mirror=mirror, progress=False)


def _no_network(url: str, timeout: float | None = None) -> io.BytesIO:
    raise AssertionError(f"unexpected network access to {url}")


def _copy_mirror(mirror: Path, target: Path) -> Path:
    """Copy the .gz files into a writable folder (the reference mirror is read-only)."""
    target.mkdir()
    for gz in mirror.glob("*.gz"):
        (target / gz.name).write_bytes(gz.read_bytes())
    return target


def test_full_run_writes_verified_aligned_text(downloaded: tuple[Path, list[Path]]) -> None:
    dest, texts = downloaded
    assert texts == [dest / f"{split}.{lang}" for split in SPLITS for lang in LANGS]
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [p.name for p in texts] + [p.name + ".gz" for p in texts]
    )
    for split in SPLITS:
        sides = [multi30k_paths(dest, split, lang).read_text(encoding="utf-8") for lang in LANGS]
        for text in sides:
            lines = text.split("\n")
            assert lines[-1] == ""  # one sentence per line, newline-terminated
            assert len(lines) - 1 == LINES[split]
            assert all(line.strip() for line in lines[:-1])  # no empty line to break alignment


def test_second_run_touches_nothing(
    downloaded: tuple[Path, list[Path]], mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, texts = downloaded
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert download_multi30k(dest, progress=False) == texts
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_missing_text_is_unpacked_from_local_gz(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out"
    download_multi30k(dest, mirror=mirror, progress=False)
    val_en = multi30k_paths(dest, "val", "en")
    expected = val_en.read_bytes()
    val_en.unlink()
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    download_multi30k(dest, progress=False)
    assert val_en.read_bytes() == expected


def test_corrupt_mirror_file_is_rejected(mirror: Path, tmp_path: Path) -> None:
    bad = _copy_mirror(mirror, tmp_path / "mirror")
    data = bytearray((bad / "val.en.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "val.en.gz").write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(Seq2SeqError) as info:
        download_multi30k(dest, mirror=bad, progress=False)
    message = str(info.value)
    assert "val.en.gz" in message
    assert multi30k.SHA256["val.en.gz"] in message
    assert multi30k._sha256_of(bad / "val.en.gz") in message
    assert "\n" not in message
    names = {p.name for p in dest.iterdir()}
    assert not {"val.en.gz", "val.en"} & names
    assert not [n for n in names if n.startswith(".") or n.endswith(".part")]
    assert "train.de" in names  # files before the bad one are kept, verified


def test_corrupt_file_in_dest_is_fetched_again(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    download_multi30k(dest, mirror=mirror, progress=False)
    (dest / "val.de.gz").write_bytes(b"not gzip")
    (dest / "val.de").write_text("stale\n", encoding="utf-8")
    download_multi30k(dest, mirror=mirror, progress=False)
    assert (dest / "val.de.gz").read_bytes() == (mirror / "val.de.gz").read_bytes()
    assert len((dest / "val.de").read_text(encoding="utf-8").splitlines()) == LINES["val"]


def test_missing_mirror_file_names_the_path(mirror: Path, tmp_path: Path) -> None:
    partial = _copy_mirror(mirror, tmp_path / "mirror")
    (partial / "test_2016_flickr.fr.gz").unlink()
    with pytest.raises(Seq2SeqError, match="test_2016_flickr.fr.gz") as info:
        download_multi30k(tmp_path / "out", mirror=partial, progress=False)
    assert str(partial / "test_2016_flickr.fr.gz") in str(info.value)


def test_missing_mirror_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="mirror folder"):
        download_multi30k(tmp_path / "out", mirror=tmp_path / "nowhere", progress=False)


class _DropsMidway(io.BytesIO):
    """A response that sends a few bytes, then times out, so a temporary file exists."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() == 0:
            return super().read(100)
        raise TimeoutError("timed out")


@pytest.mark.parametrize(
    "failure",
    [
        urllib.error.URLError("Name or service not known"),
        urllib.error.HTTPError(BASE_URL + "train.de.gz", 404, "Not Found", None, None),
        TimeoutError("timed out"),
        None,  # the connection drops during the read
    ],
    ids=["url-error", "http-404", "timeout", "drop-mid-read"],
)
def test_network_failure_names_url_and_retry(
    failure: BaseException | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_urlopen(url: str, timeout: float | None = None) -> io.BytesIO:
        if failure is None:
            return _DropsMidway(b"x" * 1000)
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    dest = tmp_path / "out"
    with pytest.raises(Seq2SeqError) as info:
        download_multi30k(dest, progress=False)
    message = str(info.value)
    assert BASE_URL + "train.de.gz" in message
    assert "rerun" in message and "--mirror" in message
    assert "\n" not in message
    assert list(dest.iterdir()) == []


def test_fake_network_download_verifies(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[tuple[str, float | None]] = []

    def fake_urlopen(url: str, timeout: float | None = None) -> io.BytesIO:
        requested.append((url, timeout))
        return io.BytesIO((mirror / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    texts = download_multi30k(tmp_path / "out", progress=False)
    names = [f"{split}.{lang}.gz" for split in SPLITS for lang in LANGS]
    assert requested == [(BASE_URL + name, multi30k.TIMEOUT_S) for name in names]
    assert [len(p.read_text(encoding="utf-8").splitlines()) for p in texts] == [
        LINES[split] for split in SPLITS for _ in LANGS
    ]


def test_progress_false_prints_nothing(
    downloaded: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    dest, _ = downloaded
    download_multi30k(dest, progress=False)
    assert capsys.readouterr() == ("", "")
    download_multi30k(dest, progress=True)
    assert "multi30k" in capsys.readouterr().err


def test_paths_reject_unknown_split_and_language(tmp_path: Path) -> None:
    assert multi30k_paths(tmp_path, "val", "fr") == tmp_path / "val.fr"
    with pytest.raises(Seq2SeqError, match="test_2016_flickr"):
        multi30k_paths(tmp_path, "test", "de")
    with pytest.raises(Seq2SeqError, match="unknown Multi30k language"):
        multi30k_paths(tmp_path, "train", "es")
