"""Inference engines beside our own PyTorch search: a model exported to CTranslate2.

`seq2seq export CHECKPOINT -o DIR` writes DIR (engines/ct2_export.py): CTranslate2's
model.bin, config.json and vocabulary, the SentencePiece model(s), and MANIFEST, which says
what DIR came from and how to translate with it. `load_translator` opens either kind of
path, so `translate` and `evaluate` switch engines by the path they are given alone.
"""

import json
from pathlib import Path
from typing import Any

from seq2seq.errors import Seq2SeqError

MANIFEST = "seq2seq-export.json"  # written last: a folder holding it is a complete export
FORMAT = "seq2seq-ctranslate2"
FORMAT_VERSION = 1
CT2_EXTRA = "pip install 'seq2seq[ctranslate2]'"


def is_export_dir(path: str | Path) -> bool:
    """Whether `path` is a folder that `seq2seq export` wrote (it holds MANIFEST)."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an exported folder, checked; a missing or foreign one is one
    Seq2SeqError naming the folder."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise Seq2SeqError(f"cannot read {path}: {error.strerror}; is {folder} a folder "
                           "written by `seq2seq export`?") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Seq2SeqError(f"{path} is not valid JSON: damaged; export the checkpoint "
                           "again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Seq2SeqError(f"{path} was not written by `seq2seq export`; export the "
                           "checkpoint again")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise Seq2SeqError(f"{folder}: export format {version!r} is not supported; this "
                           f"seq2seq reads format {FORMAT_VERSION}: export the checkpoint again")
    return manifest


def export_config(folder: str | Path):
    """The Config of the checkpoint an exported folder was written from."""
    from seq2seq.config import from_dict

    return from_dict(read_manifest(folder).get("config"), source=f"{folder}/{MANIFEST} config")


def import_ctranslate2():
    """The ctranslate2 module, or one Seq2SeqError saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise Seq2SeqError(f"CTranslate2 is not installed; {CT2_EXTRA}") from None
    return ctranslate2


def load_translator(path: str | Path, device: str = "auto", threads: int = 0):
    """A Translator for a checkpoint (or run directory), or a CTranslate2 one for a folder
    `seq2seq export` wrote; both offer translate() and nbest() with the same results.

    threads: CPU threads of the CTranslate2 engine (0: as many as torch uses); a checkpoint
    uses torch's own setting.
    """
    if is_export_dir(path):
        from seq2seq.engines.ct2 import CT2Translator

        return CT2Translator.from_dir(path, device, threads)
    from seq2seq.translate import Translator

    return Translator.from_checkpoint(path, device)
