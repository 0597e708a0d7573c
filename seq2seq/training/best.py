"""The best checkpoints by validation BLEU: which to keep, when to stop, which to average.

Pure bookkeeping over the run's `best` list ([[bleu, step], ...], best first, as
TrainState holds it); files are written and removed through a small interface (the run
directory), so tests can hand in a fake one.
"""

from dataclasses import dataclass
from typing import Protocol


class CheckpointFiles(Protocol):
    """Where checkpoints go by name (training.run_dir.RunDir is one)."""

    def save(self, name: str, state: dict) -> None: ...

    def remove(self, name: str) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """What one validation's BLEU means for the best-K checkpoints.

    best: the new list, best first, at most K long; bad_evals: validations since BLEU last
    improved; to_best: best.pt takes this checkpoint; to_keep: best-step{step}.pt is
    written; dropped: the steps whose best-step files go.
    """

    best: list[list]
    bad_evals: int
    to_best: bool = False
    to_keep: bool = False
    dropped: tuple[int, ...] = ()


def step_file(step: int) -> str:
    """The name of a best-K checkpoint."""
    return f"best-step{step}.pt"


def judge(best: list[list], bad_evals: int, bleu: float, step: int, keep: int) -> Verdict:
    """Rank a validation's BLEU among the best K so far.

    Only a strictly higher BLEU improves: a tie keeps the earlier checkpoint ahead, and
    when K are kept a tie with the worst does not enter.
    """
    improved = not best or bleu > best[0][0]
    bad_evals = 0 if improved else bad_evals + 1
    if len(best) >= keep and bleu <= best[-1][0]:
        return Verdict(best, bad_evals)
    ranked = sorted(best + [[bleu, step]], key=lambda b: (-b[0], b[1]))
    dropped = tuple(old for _, old in ranked[keep:]) if keep > 1 else ()
    return Verdict(ranked[:keep], bad_evals, to_best=improved, to_keep=keep > 1,
                   dropped=dropped)


def keep_best(files: CheckpointFiles, verdict: Verdict, step: int, state: dict) -> None:
    """Write and remove the files a verdict asks for; best.pt is the top checkpoint."""
    if verdict.to_best:
        files.save("best.pt", state)
    if verdict.to_keep:
        files.save(step_file(step), state)
    for old in verdict.dropped:
        files.remove(step_file(old))


def out_of_patience(bad_evals: int, patience: int) -> bool:
    """Early stopping: `patience` validations without a better BLEU (0 = never stop)."""
    return patience > 0 and bad_evals >= patience


def to_average(best: list[list], n: int) -> list[str]:
    """The files of the best n checkpoints, best first, for averaged.pt."""
    return [step_file(step) for _, step in best[:n]]
