"""Write the bundled toy corpus (English -> made-up "Morvan") into a folder.

Usage, from the repository root:

    python scripts/make_toy_data.py [--out data/toy] [--seed 1]
                                    [--train 20000] [--dev 500] [--test 500]

The language and its grammar are described in seq2seq/corpora/toy.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line (None means sys.argv) into out, seed, train, dev, test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/toy"), help="output folder")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--train", type=int, default=20000, help="training pairs")
    parser.add_argument("--dev", type=int, default=500, help="validation pairs")
    parser.add_argument("--test", type=int, default=500, help="test pairs")
    return parser.parse_args(argv)


def _load_writer() -> tuple[Callable[..., dict[str, int]], type[Exception]]:
    """Import write_toy_corpus and the project error, from the checkout if not installed."""
    try:
        import seq2seq  # noqa: F401
    except ImportError:
        # Run as `python scripts/make_toy_data.py`, Python puts scripts/ on the
        # path rather than the repository root.
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seq2seq.corpora.toy import write_toy_corpus
    from seq2seq.errors import Seq2SeqError

    return write_toy_corpus, Seq2SeqError


def main(argv: list[str] | None = None) -> int:
    """Write the corpus, print one line per split, and return the exit code."""
    args = _parse_args(argv)
    write_toy_corpus, error_type = _load_writer()
    try:
        counts = write_toy_corpus(args.out, args.seed, args.train, args.dev, args.test)
    except error_type as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for split, lines in counts.items():
        print(f"{split}: {lines} lines -> {args.out / split}.src, {args.out / split}.tgt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
