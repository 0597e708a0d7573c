"""Progress of translating many sentences: a bar on a terminal's stderr, and one summary
line at the end (sentences, seconds, sentences per second)."""

import sys
import time
from collections.abc import Callable

from tqdm import tqdm

Translate = Callable[[list[str]], list[str]]


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (a replaced or closed stream is not)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def summary(count: int, seconds: float) -> str:
    """'translated 40 sentences in 1.2s (33.1 sentences/s)'."""
    rate = count / seconds if seconds > 0 else 0.0
    return f"translated {count} sentences in {seconds:.1f}s ({rate:.1f} sentences/s)"


def translate_with_progress(translate: Translate, lines: list[str], batch_size: int,
                            bar: bool) -> list[str]:
    """translate(lines), one batch at a time under a progress bar on stderr when `bar`,
    then the summary line on stderr; the outputs in the order of `lines`.

    With a bar the lines go longest first (by characters, as the translator sorts by
    tokens), so the batches stay as dense as in one call; without one it is one call.
    """
    start = time.perf_counter()
    if not bar:
        outputs = translate(lines)
    else:
        outputs = _in_batches(translate, lines, batch_size)
    print(summary(len(lines), time.perf_counter() - start), file=sys.stderr, flush=True)
    return outputs


def _in_batches(translate: Translate, lines: list[str], batch_size: int) -> list[str]:
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]), reverse=True)
    outputs = [""] * len(lines)
    with tqdm(total=len(lines), unit="sent", file=sys.stderr, dynamic_ncols=True,
              leave=False) as progress:
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            for i, text in zip(part, translate([lines[i] for i in part]), strict=True):
                outputs[i] = text
            progress.update(len(part))
    return outputs
