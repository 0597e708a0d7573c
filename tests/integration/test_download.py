"""Multi30k fetcher: checksums, skipping, atomic writes and error messages, all without network.

Every test runs on a tiny fake mirror built here; the full runs also use the reference
mirror in ../shared/data/multi30k where it exists, and skip it with the reason elsewhere.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from seq2seq.corpora import multi30k
from seq2seq.corpora.multi30k import BASE_URL, LANGS, SPLITS, download_multi30k, multi30k_paths
from seq2seq.errors import Seq2SeqError

LINES = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}
FAKE_LINES = {"train": 12, "val": 3, "test_2016_flickr": 2}


@dataclass(frozen=True)
class Mirror:
    """A folder of the twelve .gz files, their checksums (None: the published ones) and
    the lines each split unpacks to."""

    path: Path
    checksums: dict[str, str] | None
    lines: dict[str, int]

    def download(self, dest: Path, mirror: Path | None | bool = True, **kwargs) -> list[Path]:
        source = self.path if mirror is True else (mirror or None)
        return download_multi30k(dest, mirror=source, progress=False,
                                 checksums=self.checksums, **kwargs)


def make_fake_mirror(folder: Path) -> Mirror:
    """Tiny gzipped Multi30k look-alikes with a SHA256SUMS that matches them."""
    folder.mkdir(parents=True)
    sums = []
    for split, count in FAKE_LINES.items():
        for lang in LANGS:
            text = "".join(f"{split} {lang} sentence {i} .\n" for i in range(count))
            data = gzip.compress(text.encode("utf-8"), mtime=0)
            (folder / f"{split}.{lang}.gz").write_bytes(data)
            sums.append(f"{hashlib.sha256(data).hexdigest()}  {split}.{lang}.gz\n")
    (folder / "SHA256SUMS").write_text("".join(sums))
    return Mirror(folder, read_sha256sums(folder / "SHA256SUMS"), FAKE_LINES)


def read_sha256sums(path: Path) -> dict[str, str]:
    """`sha256sum` output as {file name: hex digest}."""
    rows = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {name: digest for digest, name in rows}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Mirror:
    return make_fake_mirror(tmp_path_factory.mktemp("fake") / "mirror")


@pytest.fixture(scope="module", params=["fake", "reference"])
def any_mirror(request: pytest.FixtureRequest) -> Mirror:
    """The fake mirror always; the reference Multi30k mirror where ../shared has it."""
    if request.param == "fake":
        return request.getfixturevalue("fake")
    return Mirror(request.getfixturevalue("mirror"), None, LINES)


@pytest.fixture(scope="module")
def downloaded(any_mirror: Mirror, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Mirror, Path, list[Path]]:
    """One full run from each mirror, shared by the tests that only read its output."""
    dest = tmp_path_factory.mktemp("multi30k")
    return any_mirror, dest, any_mirror.download(dest)


def _no_network(url: str, timeout: float | None = None) -> io.BytesIO:
    raise AssertionError(f"unexpected network access to {url}")


def _copy_mirror(mirror: Mirror, target: Path) -> Mirror:
    """Copy the .gz files into a folder a test may damage."""
    target.mkdir()
    for gz in mirror.path.glob("*.gz"):
        (target / gz.name).write_bytes(gz.read_bytes())
    return Mirror(target, mirror.checksums, mirror.lines)


def test_reference_mirror_matches_the_published_checksums(mirror: Path) -> None:
    assert read_sha256sums(mirror / "SHA256SUMS") == multi30k.SHA256


def test_full_run_writes_verified_aligned_text(
        downloaded: tuple[Mirror, Path, list[Path]]) -> None:
    source, dest, texts = downloaded
    assert texts == [dest / f"{split}.{lang}" for split in SPLITS for lang in LANGS]
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [p.name for p in texts] + [p.name + ".gz" for p in texts]
    )
    for split in SPLITS:
        sides = [multi30k_paths(dest, split, lang).read_text(encoding="utf-8") for lang in LANGS]
        for text in sides:
            lines = text.split("\n")
            assert lines[-1] == ""  # one sentence per line, newline-terminated
            assert len(lines) - 1 == source.lines[split]
            assert all(line.strip() for line in lines[:-1])  # no empty line to break alignment


def test_second_run_touches_nothing(
    downloaded: tuple[Mirror, Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, dest, texts = downloaded
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert source.download(dest, mirror=None) == texts
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_missing_truncated_or_edited_text_is_unpacked_again(
    fake: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out"
    fake.download(dest)
    val_en, train_de, test_fr = (multi30k_paths(dest, *name) for name in (
        ("val", "en"), ("train", "de"), ("test_2016_flickr", "fr")))
    expected = {p: p.read_bytes() for p in (val_en, train_de, test_fr)}
    val_en.unlink()
    train_de.write_bytes(expected[train_de][:-7])  # cut short, as by a full disk
    test_fr.write_bytes(expected[test_fr].replace(b"sentence", b"sentense"))  # same size
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    fake.download(dest, mirror=None)
    assert {p: p.read_bytes() for p in expected} == expected


def test_corrupt_mirror_file_is_rejected(fake: Mirror, tmp_path: Path) -> None:
    bad = _copy_mirror(fake, tmp_path / "mirror")
    data = bytearray((bad.path / "val.en.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad.path / "val.en.gz").write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(Seq2SeqError) as info:
        bad.download(dest)
    message = str(info.value)
    assert "val.en.gz" in message
    assert fake.checksums["val.en.gz"] in message
    assert multi30k._sha256_of(bad.path / "val.en.gz") in message
    assert "\n" not in message
    names = {p.name for p in dest.iterdir()}
    assert not {"val.en.gz", "val.en"} & names
    assert not [n for n in names if n.startswith(".") or n.endswith(".part")]
    assert "train.de" in names  # files before the bad one are kept, verified


def test_corrupt_file_in_dest_is_fetched_again(fake: Mirror, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    fake.download(dest)
    (dest / "val.de.gz").write_bytes(b"not gzip")
    (dest / "val.de").write_text("stale\n", encoding="utf-8")
    fake.download(dest)
    assert (dest / "val.de.gz").read_bytes() == (fake.path / "val.de.gz").read_bytes()
    assert len((dest / "val.de").read_text(encoding="utf-8").splitlines()) == FAKE_LINES["val"]


def test_missing_mirror_file_names_the_path(fake: Mirror, tmp_path: Path) -> None:
    partial = _copy_mirror(fake, tmp_path / "mirror")
    (partial.path / "test_2016_flickr.fr.gz").unlink()
    with pytest.raises(Seq2SeqError, match="test_2016_flickr.fr.gz") as info:
        partial.download(tmp_path / "out")
    assert str(partial.path / "test_2016_flickr.fr.gz") in str(info.value)


def test_the_mirror_folder_is_never_the_destination(fake: Mirror, tmp_path: Path) -> None:
    copy = _copy_mirror(fake, tmp_path / "mirror")
    before = {p.name: p.read_bytes() for p in copy.path.iterdir()}
    (tmp_path / "link").symlink_to(copy.path)
    for dest in (copy.path, tmp_path / "link", tmp_path / "mirror/../mirror"):
        with pytest.raises(Seq2SeqError, match="is the --mirror folder"):
            copy.download(dest)
    assert {p.name: p.read_bytes() for p in copy.path.iterdir()} == before


def test_an_unwritable_destination_is_one_line(fake: Mirror, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder\n")
    with pytest.raises(Seq2SeqError, match="cannot create download folder") as info:
        fake.download(tmp_path / "file/multi30k")
    assert "not a folder" in str(info.value) and "\n" not in str(info.value)


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
    fake: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[tuple[str, float | None]] = []

    def fake_urlopen(url: str, timeout: float | None = None) -> io.BytesIO:
        requested.append((url, timeout))
        return io.BytesIO((fake.path / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    texts = fake.download(tmp_path / "out", mirror=None)
    names = [f"{split}.{lang}.gz" for split in SPLITS for lang in LANGS]
    assert requested == [(BASE_URL + name, multi30k.TIMEOUT_S) for name in names]
    assert [len(p.read_text(encoding="utf-8").splitlines()) for p in texts] == [
        FAKE_LINES[split] for split in SPLITS for _ in LANGS
    ]


def test_progress_false_prints_nothing(
    fake: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    fake.download(dest)
    assert capsys.readouterr() == ("", "")
    download_multi30k(dest, progress=True, checksums=fake.checksums)
    assert "multi30k" in capsys.readouterr().err


def test_paths_reject_unknown_split_and_language(tmp_path: Path) -> None:
    assert multi30k_paths(tmp_path, "val", "fr") == tmp_path / "val.fr"
    with pytest.raises(Seq2SeqError, match="test_2016_flickr"):
        multi30k_paths(tmp_path, "test", "de")
    with pytest.raises(Seq2SeqError, match="unknown Multi30k language"):
        multi30k_paths(tmp_path, "train", "es")


def test_download_command_from_a_mirror(
    fake: Mirror, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_bad_input import assert_one_line_error, cli

    monkeypatch.setattr(multi30k, "SHA256", fake.checksums)  # what the command checks against
    done = cli(capfd, monkeypatch, "download", "multi30k", "--dir", tmp_path / "out",
               "--mirror", fake.path)
    assert done.code == 0 and "12 files ready" in done.err
    same = cli(capfd, monkeypatch, "download", "multi30k", "--dir", fake.path,
               "--mirror", fake.path)
    assert_one_line_error(same, "is the --mirror folder")
