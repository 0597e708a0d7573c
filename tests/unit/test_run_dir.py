"""The run directory: one writer at a time, checks before deletion, only seq2seq's files
deleted, partial saves cleaned up, no folder left behind by a run that never started."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.errors import Seq2SeqError
from seq2seq.training.run_dir import LOCK_NAME, RunDir
from tests.conftest import ROOT, tiny_config_yaml, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli

HOLD = ("import sys; from seq2seq.training.run_dir import RunDir; "
        "run = RunDir(sys.argv[1], writer=True); run.acquire(); print('held', flush=True); "
        "sys.stdin.read()")


@pytest.fixture
def holder(tmp_path):
    """Another process holding tmp_path/run's lock; yields (its Popen, the folder)."""
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline() == "held\n"
        yield child, run
    finally:
        child.kill()
        child.wait()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_writer_is_refused_with_the_holder_and_the_lock_dies_with_it(
        holder, tmp_path, capfd, monkeypatch):
    child, run = holder
    (run / "last.pt").write_bytes(b"the first run's checkpoint")
    with pytest.raises(Seq2SeqError, match=f"pid {child.pid} on host {socket.gethostname()}"):
        RunDir(run, writer=True).acquire()
    config = tiny_config_yaml(tmp_path, write_slice(tmp_path, n_train=20, n_dev=4))
    before = snapshot(run)
    for args in (["train", config, "--no-progress", "--overwrite"], ["prepare", config]):
        result = cli(capfd, monkeypatch, *args)
        assert_one_line_error(result, f"{run} is in use", f"pid {child.pid}", "since")
    assert snapshot(run) == before
    child.send_signal(signal.SIGKILL)  # no clean-up of its own: the kernel drops the lock
    child.wait()
    with RunDir(run, writer=True) as again:
        assert str(os.getpid()) in (run / LOCK_NAME).read_text()
        with pytest.raises(Seq2SeqError, match="in use"):  # also within one process
            RunDir(run, writer=True).acquire()
    assert not again._lock and not (run / LOCK_NAME).exists()
    RunDir(run, writer=True).acquire()  # released: free again


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    run = RunDir(tmp_path / "runs" / "new", writer=True)
    run.acquire()
    assert (tmp_path / "runs" / "new").is_dir()
    with pytest.raises(Seq2SeqError, match="--resume: no .*last.pt to resume from"):
        run.check(resume=True, overwrite=False)
    run.release()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()  # a folder that was there already stays
    with RunDir(tmp_path / "mine", writer=True):
        pass
    assert (tmp_path / "mine").is_dir()


@pytest.mark.parametrize("name", ["", "  ", "\t"])
def test_an_empty_run_dir_is_refused_not_the_current_directory(name):
    with pytest.raises(Seq2SeqError, match="train.run_dir is empty"):
        RunDir(name, writer=True)


def test_a_run_dir_that_is_a_file_or_unwritable_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(Seq2SeqError, match="is a file, not a folder"):
        RunDir(tmp_path / "file", writer=True).acquire()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(Seq2SeqError, match="symbolic link loop"):
        RunDir(loop / "run", writer=True).acquire()


def seq2seq_and_user_files(run: Path) -> tuple[set[str], set[str]]:
    """Fill `run` with files named as train writes them and files it never writes."""
    ours = {"last.pt", "best.pt", "best-step12.pt", "averaged.pt", "metrics.jsonl",
            "config.yaml"}
    theirs = {"notes.pt", "best-step12.pt.bak", "my.model", "spm.model", "README",
              "last.pt.old"}
    run.mkdir(parents=True, exist_ok=True)
    for name in ours | theirs:
        (run / name).write_text(name)
    return ours, theirs


def test_only_seq2seq_files_are_deleted_and_only_after_the_checks(tmp_path):
    ours, theirs = seq2seq_and_user_files(tmp_path / "run")
    run = RunDir(tmp_path / "run", writer=True)
    with run:
        with pytest.raises(Seq2SeqError, match="already holds checkpoints"):
            run.check(resume=False, overwrite=False)
        with pytest.raises(RuntimeError):
            run.clear_previous()  # not checked yet: nothing may go
        with pytest.raises(Seq2SeqError, match="exclude each other"):
            run.check(resume=True, overwrite=True)
        run.check(resume=True, overwrite=False)
        run.clear_previous()  # resuming keeps everything
        assert {p.name for p in run.path.iterdir()} >= ours | theirs
        run.check(resume=False, overwrite=True)
        run.clear_previous()
        assert {p.name for p in run.path.iterdir()} == theirs | {LOCK_NAME}
    assert RunDir(tmp_path / "run", writer=False).checkpoints() == []  # notes.pt is not one


def test_overwrite_deletes_nothing_when_a_later_check_fails(tmp_path, capfd, monkeypatch):
    data = write_slice(tmp_path, n_train=30, n_dev=4)
    config = tiny_config_yaml(tmp_path, data, max_steps=1, eval_every=1)
    ours, theirs = seq2seq_and_user_files(tmp_path / "run")
    (tmp_path / "run/spm.model").unlink()  # a foreign tokenizer would be used: not this one
    theirs.remove("spm.model")
    (data / "dev.tgt").rename(data / "dev.tgt.moved")
    before = snapshot(tmp_path / "run")
    failing = {"missing dev file": ([], ["file not found", "dev.tgt", "data.dev"]),
               "fp16 on a CPU": (["--set", "train.precision=fp16", "--set", "train.device=cpu"],
                                 ["fp16 needs a CUDA device"]),
               "a bad optimizer value": (["--set", "train.betas=[1.5, 0.98]"], ["train.betas"])}
    for name, (sets, fragments) in failing.items():
        if name == "fp16 on a CPU":  # the dev file is back from here on
            (data / "dev.tgt.moved").rename(data / "dev.tgt")
        result = cli(capfd, monkeypatch, "train", config, "--no-progress", "--overwrite", *sets)
        assert_one_line_error(result, *fragments)
        assert snapshot(tmp_path / "run") == before, name
    result = cli(capfd, monkeypatch, "train", config, "--no-progress", "--overwrite")
    assert result.code == 0, result.err
    after = snapshot(tmp_path / "run")
    assert {name: after[name] for name in theirs} == {name: before[name] for name in theirs}
    assert "best-step12.pt" not in after and "averaged.pt" not in after
    assert after["last.pt"] != before["last.pt"] and LOCK_NAME not in after


def test_overwrite_deletes_nothing_when_the_data_or_model_fails_after_the_checks(
        tmp_path, capfd, monkeypatch):
    data = write_slice(tmp_path, n_train=30, n_dev=4)
    config = tiny_config_yaml(tmp_path, data, max_steps=1, eval_every=1)
    ours, _ = seq2seq_and_user_files(tmp_path / "run")
    (tmp_path / "run/spm.model").unlink()  # a foreign tokenizer would be used: not this one
    before = snapshot(tmp_path / "run")
    (data / "dev.src").write_text("one line, where dev.tgt has four\n")  # found when read
    result = cli(capfd, monkeypatch, "train", config, "--no-progress", "--overwrite")
    assert_one_line_error(result, "dev.src has 1 lines")
    after = snapshot(tmp_path / "run")
    assert {name: after.get(name) for name in ours} == {name: before[name] for name in ours}


def test_partial_saves_are_removed_by_the_next_writer(tmp_path):
    run = tmp_path / "run"
    (run / "cache").mkdir(parents=True)
    partial = [run / ".last.pt.k2j4_x9q.tmp", run / "cache" / ".ids-0a1b.pt.abcdefgh.tmp"]
    kept = [run / ".notes.tmp", run / "draft.tmp", run / "last.pt"]
    for path in partial + kept:
        path.write_bytes(b"half")
    notes = []
    with RunDir(run, writer=False, log=notes.append):  # a reader removes nothing
        pass
    assert all(p.exists() for p in partial)
    with RunDir(run, writer=True, log=notes.append):
        pass
    assert not any(p.exists() for p in partial) and all(p.exists() for p in kept)
    assert len(notes) == 2 and "interrupted" in notes[0]


@pytest.fixture
def full_disk(tmp_path):
    """A 16 kB tmpfs, filled: where root may mount one (else the test is skipped)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        with open(mount / "fill", "wb", buffering=0) as f, contextlib.suppress(OSError):
            f.write(b"\0" * 65536)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_leaves_no_folder(full_disk, tmp_path, capfd, monkeypatch):
    config = tiny_config_yaml(tmp_path, write_slice(tmp_path, n_train=20, n_dev=4),
                              run_dir=full_disk / "runs" / "a")
    for command in ("prepare", "train"):
        result = cli(capfd, monkeypatch, command, config)
        assert_one_line_error(result, "is full")
        assert sorted(p.name for p in full_disk.iterdir()) == ["fill"]
