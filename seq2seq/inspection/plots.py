"""Training curves: loss, learning rate, BLEU and chrF of one or more runs against steps and
wall time.

matplotlib is optional (`pip install 'seq2seq[plot]'`) and imported only when drawing.
"""

import json
from pathlib import Path

from seq2seq.errors import Seq2SeqError

# (metrics.jsonl key, axis title): the columns of the figure
CURVES = (("train_loss", "training loss"), ("val_loss", "validation loss"),
          ("lr", "learning rate"), ("bleu", "BLEU"), ("chrf", "chrF"))


def new_figure(width: float, height: float):
    """A matplotlib Figure of this size in inches, drawn without pyplot's global state.

    Raises Seq2SeqError, with the install command, when matplotlib is missing.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise Seq2SeqError("drawing images needs matplotlib: pip install 'seq2seq[plot]'"
                           ) from None
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure, path: Path, dpi: int = 100) -> None:
    """Write the figure; its format follows the suffix (.png, .pdf, .svg)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi)
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror or error}") from None
    except ValueError as error:  # an unknown suffix
        raise Seq2SeqError(f"cannot write {path}: {error}; use .png, .pdf or .svg") from None


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of RUN_DIR/metrics.jsonl, in order, each keeping only its numeric values.

    A malformed last line is skipped: training may be writing it right now.
    """
    path = Path(run_dir) / "metrics.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise Seq2SeqError(f"{path} not found; is {run_dir} a run directory written by "
                           "`seq2seq train`?") from None
    except (OSError, UnicodeDecodeError) as error:
        raise Seq2SeqError(f"cannot read {path}: {error}") from None
    lines = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    rows = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == lines[-1][0]:
                break
            raise Seq2SeqError(f"{path}, line {n}: not a JSON object") from None
        if not isinstance(row, dict):
            raise Seq2SeqError(f"{path}, line {n}: not a JSON object")
        # a hand-edited null or string would stop the drawing with a traceback
        rows.append({k: v for k, v in row.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return rows


def plot_runs(run_dirs: list[Path], output: Path) -> None:
    """Draw training loss, validation loss, learning rate, BLEU and chrF of each run, against
    steps (top row) and wall-clock time (bottom row), one line per run labelled by its path,
    to an image file."""
    if not run_dirs:
        raise Seq2SeqError("plot: name at least one run directory")
    runs = {label: read_metrics(d) for label, d in zip(labels(run_dirs), run_dirs, strict=True)}
    if not any(runs.values()):
        raise Seq2SeqError("plot: the metrics files have no rows yet; plot again after the "
                           "first train.log_every steps")
    scale, unit = _time_unit(max((r.get("elapsed", 0) for rows in runs.values() for r in rows),
                                 default=0))
    figure = new_figure(4 * len(CURVES), 7)
    axes = figure.subplots(2, len(CURVES), squeeze=False)
    for col, (key, title) in enumerate(CURVES):
        for label, rows in runs.items():
            points = [(r["step"], r["elapsed"] / scale, r[key]) for r in rows
                      if key in r and "step" in r and "elapsed" in r]
            if points:
                steps, times, values = zip(*points, strict=True)
                marker = "." if len(points) < 30 else None  # few validations: show each
                axes[0][col].plot(steps, values, marker=marker, label=label)
                axes[1][col].plot(times, values, marker=marker, label=label)
        for row, xlabel in enumerate(("step", f"wall time ({unit})")):
            ax = axes[row][col]
            ax.set(title=title, xlabel=xlabel)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize="small")
    save_figure(figure, output)


def labels(run_dirs: list[Path]) -> list[str]:
    """Each run's path, cut to its last folders where those tell every run apart (runs/a/toy
    and runs/b/toy become a/toy and b/toy); a path named twice is told apart by a count,
    so no run's curves hide another's."""
    paths = [Path(d) for d in run_dirs]
    longest = max(len(p.parts) for p in paths)
    for depth in range(1, longest + 1):
        cut = [str(Path(*p.parts[-depth:])) if p.parts else str(p) for p in paths]
        if len(set(cut)) == len(set(map(str, paths))):
            break
    seen: dict[str, int] = {}
    found = []
    for label in cut:
        seen[label] = seen.get(label, 0) + 1
        found.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return found


def _time_unit(longest: float) -> tuple[float, str]:
    """Seconds per unit, and its name, for an axis that reaches `longest` seconds."""
    if longest >= 3 * 3600:
        return 3600.0, "h"
    if longest >= 600:
        return 60.0, "min"
    return 1.0, "s"
