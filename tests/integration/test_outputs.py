"""What commands write: never over an input, whole or not at all, one line when they cannot.

Each test covers one class of failure across every command it applies to. Read-only and
full disks are small tmpfs mounts (root only; skipped with the reason elsewhere).
"""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write
from tests.conftest import tiny_config_yaml
from tests.integration.test_bad_input import assert_one_line_error, cli

TMPFS_BYTES = 64 * 1024


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A small tmpfs mounted on `folder` for the duration; skip where it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system has no block left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths if p.is_file()}


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))
                or ".tmp." in p.name]


# ---------------------------------------------------------------- an output that is an input


def _symlink(tmp: Path, name: str, to: Path) -> Path:
    link = tmp / name
    link.symlink_to(to)
    return link


def _hardlink(tmp: Path, name: str, to: Path) -> Path:
    link = tmp / name
    os.link(to, link)
    return link


OUTPUT_IS_INPUT = {
    # name: (arguments, stdin file or None); CK checkpoint, SRC/REF test files, H hypotheses
    "translate -o CK": (["translate", "CK", "the dog .", "-o", "CK"], None),
    "translate -o link to CK": (["translate", "CK", "the dog .", "-o", "LINK_CK"], None),
    "translate -i F -o F": (["translate", "CK", "-i", "SRC", "-o", "SRC"], None),
    "translate -o F < F": (["translate", "CK", "-o", "SRC"], "SRC"),
    "translate -o hard link < F": (["translate", "CK", "-o", "HARD_SRC"], "SRC"),
    "evaluate -o REF": (["evaluate", "CK", "--src", "SRC", "--ref", "REF", "-o", "REF"], None),
    "evaluate -o SRC relative": (["evaluate", "CK", "--src", "SRC", "--ref", "REF", "-o",
                                  "REL_SRC"], None),
    "evaluate --hyp H -o H": (["evaluate", "CK", "--hyp", "H", "--ref", "REF", "-o", "H"], None),
    "average -o link to input": (["average", "CK", "CK", "-o", "LINK_CK"], None),
    # a .png name, since a suffix attention cannot write is refused first anyway
    "attention -o link to CK": (["attention", "CK", "the dog .", "-o", "PNG_CK"], None),
    "plot -o link to metrics.jsonl": (["plot", "RUN", "-o", "PNG_METRICS"], None),
}


@pytest.mark.parametrize("case", list(OUTPUT_IS_INPUT))
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
        case, trained, tmp_path, capfd, monkeypatch):
    ckpt, data = trained
    work = tmp_path / "work"
    work.mkdir()
    for name in ("test.src", "test.tgt"):
        (work / name).write_bytes((data / name).read_bytes())
    (work / "hyp.txt").write_bytes((data / "test.tgt").read_bytes())
    (work / "run").mkdir()
    (work / "run/metrics.jsonl").write_text('{"step": 1, "train_loss": 3.0}\n')
    own_ckpt = work / "model.pt"
    own_ckpt.write_bytes(ckpt.read_bytes())
    names = {"CK": own_ckpt, "SRC": work / "test.src", "REF": work / "test.tgt",
             "H": work / "hyp.txt", "RUN": work / "run", "METRICS": work / "run/metrics.jsonl",
             "LINK_CK": _symlink(tmp_path, "link.pt", own_ckpt),
             "PNG_CK": _symlink(tmp_path, "maps.png", own_ckpt),
             "PNG_METRICS": _symlink(tmp_path, "curves.png", work / "run/metrics.jsonl"),
             "HARD_SRC": _hardlink(tmp_path, "hard.src", work / "test.src"),
             "REL_SRC": Path(os.path.relpath(work / "test.src"))}
    args, stdin = OUTPUT_IS_INPUT[case]
    before = snapshot(*names.values())
    result = cli(capfd, monkeypatch, *[names.get(a, a) for a in args],
                 stdin=names[stdin] if stdin else b"")
    assert_one_line_error(result, "input")
    assert snapshot(*names.values()) == before
    assert no_temporary_files(work)


# ---------------------------------------------------------------- whole or not at all


def test_outputs_are_written_whole_or_not_at_all(trained, tmp_path, capfd, monkeypatch):
    from seq2seq import translate

    ckpt, _ = trained
    out = tmp_path / "out.txt"
    out.write_text("the old translations\n")
    out.chmod(0o640)
    calls = []

    def interrupted(self, lines, **options):  # the second chunk of stdin never finishes
        calls.append(len(lines))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ["x"] * len(lines)

    monkeypatch.setattr(translate.Translator, "translate", interrupted)
    result = cli(capfd, monkeypatch, "translate", ckpt, "-o", out, stdin=b"the dog .\n" * 1500)
    assert result.code == 130 and calls == [1000, 500]
    assert out.read_text() == "the old translations\n"
    assert no_temporary_files(tmp_path)
    monkeypatch.undo()
    done = cli(capfd, monkeypatch, "translate", ckpt, "-o", out, "--beam-size", "1",
               stdin=b"the dog .\n")
    assert done.code == 0, done.err
    assert len(out.read_text().splitlines()) == 1
    assert out.stat().st_mode & 0o777 == 0o640  # the file keeps its mode
    nested = tmp_path / "new/folder/out.txt"  # missing folders are created
    made = cli(capfd, monkeypatch, "translate", ckpt, "the dog .", "-o", nested)
    assert made.code == 0 and nested.is_file()
    link = tmp_path / "link.txt"  # a link is written through, and stays a link
    link.symlink_to(nested)
    through = cli(capfd, monkeypatch, "translate", ckpt, "a", "b", "-o", link)
    assert through.code == 0 and link.is_symlink()
    assert len(nested.read_text().splitlines()) == 2
    devnull = cli(capfd, monkeypatch, "translate", ckpt, "the dog .", "-o", os.devnull)
    assert devnull.code == 0, devnull.err  # devices are written as they are, not replaced


# ---------------------------------------------------------------- unwritable places


@contextlib.contextmanager
def unwritable(place: str, tmp_path: Path):
    """A folder (or path) where nothing can be written, and what the message says why."""
    if place == "read-only":
        with tmpfs(tmp_path / "ro", f"ro,size={TMPFS_BYTES}") as folder:
            yield folder, "read-only"
    elif place == "full":
        with tmpfs(tmp_path / "full", f"size={TMPFS_BYTES}") as folder:
            fill(folder)
            yield folder, "full"
    elif place == "under a file":
        (tmp_path / "file").write_text("a file, not a folder\n")
        yield tmp_path / "file", "not a folder"
    else:
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        yield tmp_path / "loop", "link loop"


COMMANDS = {
    "train": ["train", "CONFIG", "--no-progress", "--set", "train.run_dir=PLACE/run"],
    "resume": ["train", "CONFIG", "--resume", "--set", "train.run_dir=PLACE/run"],
    "prepare": ["prepare", "CONFIG", "--set", "train.run_dir=PLACE/run"],
    "translate": ["translate", "CK", "the dog .", "-o", "PLACE/out.txt"],
    "evaluate": ["evaluate", "CK", "--src", "DATA/test.src", "--ref", "DATA/test.tgt", "-o",
                 "PLACE/out.txt"],
    "average": ["average", "CK", "CK", "-o", "PLACE/avg.pt"],
}


@pytest.mark.parametrize("place", ["read-only", "full", "under a file", "looping link"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_unwritable_outputs_and_run_dirs_are_one_line(command, place, trained, tmp_path,
                                                      capfd, monkeypatch):
    ckpt, data = trained
    config = tiny_config_yaml(tmp_path, data, max_steps=1, eval_every=1)
    with unwritable(place, tmp_path) as (folder, why):
        names = {"CONFIG": str(config), "CK": str(ckpt), "DATA": str(data), "PLACE": str(folder)}
        args = [_fill_in(a, names) for a in COMMANDS[command]]
        result = cli(capfd, monkeypatch, *args)
        assert_one_line_error(result, str(folder), why)
        if place == "full":
            assert no_temporary_files(folder)


def _fill_in(arg: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        arg = arg.replace(key, value)
    return arg


def test_a_disk_that_fills_while_writing_says_so(trained, tmp_path, capfd, monkeypatch):
    _, data = trained
    with tmpfs(tmp_path / "small", f"size={TMPFS_BYTES}") as folder:
        big = torch.zeros(4 * TMPFS_BYTES)
        for path, write in ((folder / "raw.bin", lambda f: f.write(bytes(2 * TMPFS_BYTES))),
                            (folder / "tensor.pt", lambda f: torch.save(big, f))):
            with pytest.raises(Seq2SeqError, match="disk is full") as info:
                atomic_write(path, write)
            assert str(path) in str(info.value) and not path.exists()
        config = tiny_config_yaml(tmp_path, data, max_steps=1, eval_every=1,
                                  run_dir=folder / "run")
        result = cli(capfd, monkeypatch, "train", config, "--no-progress")
        assert_one_line_error(result, "disk is full", str(folder / "run"))
        assert no_temporary_files(folder)


def test_a_read_failure_inside_a_writer_is_not_called_a_write_failure(tmp_path, capfd,
                                                                       monkeypatch):
    missing = tmp_path / "elsewhere.txt"

    def reads_a_missing_file(f):
        f.write(missing.read_bytes())

    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "out.bin", reads_a_missing_file)
    assert not (tmp_path / "out.bin").exists() and no_temporary_files(tmp_path)
    result = cli(capfd, monkeypatch, "plot", tmp_path / "no-run", "-o", tmp_path / "curves.png")
    assert_one_line_error(result, "no-run/metrics.jsonl not found")
    assert "cannot write" not in result.err


def test_a_closed_pipe_ends_the_command_quietly():
    """`seq2seq ... | head -c 1`: the reader leaves early; no traceback, exit 141 (SIGPIPE).

    The command here is a stand-in that prints a lot, run through cli.main as any is.
    """
    import subprocess
    import sys

    from tests.conftest import ROOT

    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    code = ("import seq2seq.cli as c\n"
            "c.app = lambda: [print('word ' * 50) for _ in range(100000)]\n"
            "c.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], stdout=reader.stdin,
                          stderr=subprocess.PIPE, cwd=ROOT, timeout=60)
    reader.stdin.close()
    reader.wait()
    assert proc.returncode == 141, proc.stderr
    assert b"Traceback" not in proc.stderr
