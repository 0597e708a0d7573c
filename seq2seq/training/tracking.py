"""Experiment tracking: the rows of metrics.jsonl also as TensorBoard event files.

Off unless train.tensorboard is set; the tensorboard package is an optional extra
(`pip install 'seq2seq[tensorboard]'`), imported only when tracking is on. The events go
to RUN_DIR/tensorboard, beside metrics.jsonl: `tensorboard --logdir runs` compares runs.
"""

from pathlib import Path

from seq2seq.errors import Seq2SeqError

FOLDER = "tensorboard"
EVENTS = "events.out.tfevents."  # how every event file's name begins
# metrics.jsonl key -> TensorBoard tag; keys not named here are not tracked
TAGS = {"train_loss": "train/loss", "lr": "train/learning_rate",
        "tokens_per_s": "train/tokens_per_s", "val_loss": "valid/loss", "val_ppl": "valid/ppl",
        "bleu": "valid/bleu", "chrf": "valid/chrf"}


def summary_writer_class():
    """torch's SummaryWriter; Seq2SeqError with the install command when tensorboard is
    missing (checked before a run deletes or trains anything)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise Seq2SeqError("train.tensorboard needs the tensorboard package: pip install "
                           "'seq2seq[tensorboard]' (or set train.tensorboard=false)") from None
    return SummaryWriter


class Tracker:
    """Writes scalars to TensorBoard, or nothing (folder None: tracking off, or not the main
    process).

    folder: where the event files go; first_step: the step the run starts after (a resumed
    run drops the events an interrupted session wrote after its checkpoint).
    """

    def __init__(self, folder: Path | None = None, first_step: int = 0):
        self.writer = None
        if folder is None:
            return
        writer_class = summary_writer_class()
        if not first_step:  # a fresh run: an earlier run's curves would mix with this one's
            clear_events(folder)
        purge = first_step + 1 if first_step else None  # drop events after the checkpoint
        self.writer = writer_class(log_dir=str(folder), purge_step=purge)

    def add(self, row: dict, step: int, prefix: str = "") -> None:
        """The numbers of one metrics row at `step`; prefix renames the section, e.g.
        'averaged/' for the averaged checkpoint's scores."""
        if self.writer is None:
            return
        for key, tag in TAGS.items():
            value = row.get(key)
            if isinstance(value, (int, float)):
                name = prefix + tag.split("/", 1)[1] if prefix else tag
                self.writer.add_scalar(name, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_tracker(enabled: bool, run_dir: Path, step: int, is_main: bool) -> Tracker:
    """The run's Tracker: RUN_DIR/tensorboard when `enabled` on the main process, else off."""
    if not (enabled and is_main):
        return Tracker()
    return Tracker(Path(run_dir) / FOLDER, first_step=step)


def clear_events(folder: Path) -> None:
    """Delete the event files an earlier run left in `folder` (only those files)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(EVENTS) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
