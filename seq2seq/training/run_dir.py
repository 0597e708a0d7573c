"""A run directory: checkpoints, the resolved config, metrics.jsonl. No surprise overwrites."""

import json
from pathlib import Path

from seq2seq.checkpoint import save_checkpoint
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write


class RunDir:
    """Files of one training run; only the main process writes."""

    def __init__(self, path: Path, writer: bool):
        self.path, self.writer = Path(path), writer

    def checkpoints(self) -> list[Path]:
        return sorted(self.path.glob("*.pt")) if self.path.is_dir() else []

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Refuse to train over earlier checkpoints unless told to resume or overwrite."""
        existing = self.checkpoints()
        if resume:
            if not (self.path / "last.pt").is_file():
                raise Seq2SeqError(f"--resume: no {self.path / 'last.pt'} to resume from; "
                                   "train without --resume to start")
            return
        if existing and not overwrite:
            raise Seq2SeqError(f"{self.path} already holds checkpoints ({existing[0].name}, ...); "
                               "add --resume to continue, --overwrite to start again, or set "
                               "another train.run_dir")
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            # --overwrite starts from scratch, tokenizer included: the config may have changed it.
            tokenizers = list(self.path.glob("spm*.model")) if overwrite else []
            for stale in existing + tokenizers + [self.path / "metrics.jsonl"]:
                stale.unlink(missing_ok=True)

    def write_config(self, config, dump) -> None:
        if self.writer:
            dump(config, self.path / "config.yaml")

    def save(self, name: str, state: dict) -> None:
        if self.writer:
            save_checkpoint(state, self.path / name)

    def remove(self, name: str) -> None:
        if self.writer:
            (self.path / name).unlink(missing_ok=True)

    def append_metrics(self, row: dict) -> None:
        if self.writer:
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def trim_metrics(self, step: int) -> None:
        """On resume, forget rows written after the checkpoint's step."""
        path = self.path / "metrics.jsonl"
        if not self.writer or not path.is_file():
            return
        rows = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                if (row := _row(line)) is not None and row.get("step", 0) <= step]
        text = "".join(r + "\n" for r in rows).encode("utf-8")
        atomic_write(path, lambda f: f.write(text))  # a kill mid-write keeps the old file


def _row(line: str) -> dict | None:
    """One metrics row, or None for a blank line or one torn by a crash mid-append."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None
