"""Best-K retention by validation BLEU, early stopping and the files to average: no model."""

from seq2seq.training.best import judge, keep_best, out_of_patience, to_average


class FakeFiles:
    """The run directory as a dict of name -> state."""

    def __init__(self):
        self.files = {}

    def save(self, name: str, state: dict) -> None:
        self.files[name] = state

    def remove(self, name: str) -> None:
        self.files.pop(name, None)


def run_evals(bleus: list[float], keep: int) -> tuple[list, int, FakeFiles]:
    """Validations at steps 1, 2, ... with these BLEU scores: (best, bad_evals, files)."""
    best, bad, files = [], 0, FakeFiles()
    for step, bleu in enumerate(bleus, start=1):
        verdict = judge(best, bad, bleu, step, keep)
        keep_best(files, verdict, step, {"step": step})
        best, bad = verdict.best, verdict.bad_evals
    return best, bad, files


def test_keeps_the_k_best_by_bleu_and_best_pt_is_the_top_one():
    best, bad, files = run_evals([10.0, 30.0, 20.0, 5.0, 25.0], keep=3)
    assert best == [[30.0, 2], [25.0, 5], [20.0, 3]]
    assert set(files.files) == {"best.pt", "best-step2.pt", "best-step3.pt", "best-step5.pt"}
    assert files.files["best.pt"] == {"step": 2}
    assert bad == 3  # steps 3, 4, 5 did not beat step 2


def test_keep_one_writes_best_pt_only():
    best, _, files = run_evals([10.0, 30.0, 20.0], keep=1)
    assert best == [[30.0, 2]] and set(files.files) == {"best.pt"}
    assert files.files["best.pt"] == {"step": 2}


def test_a_tie_keeps_the_earlier_checkpoint():
    best, bad, files = run_evals([20.0, 20.0], keep=2)
    assert best == [[20.0, 1], [20.0, 2]]  # the earlier step ranks first
    assert files.files["best.pt"] == {"step": 1} and bad == 1  # a tie is no improvement
    best, _, files = run_evals([30.0, 20.0, 20.0], keep=2)
    assert best == [[30.0, 1], [20.0, 2]]  # a tie with the worst of K full ones stays out
    assert "best-step3.pt" not in files.files


def test_a_dropped_checkpoint_loses_its_file():
    _, _, files = run_evals([10.0, 20.0, 30.0], keep=2)
    assert set(files.files) == {"best.pt", "best-step2.pt", "best-step3.pt"}


def test_patience_counts_validations_without_a_better_bleu():
    _, bad, _ = run_evals([10.0, 9.0, 10.0], keep=1)
    assert bad == 2 and out_of_patience(bad, 2) and not out_of_patience(bad, 3)
    _, bad, _ = run_evals([10.0, 9.0, 11.0], keep=1)
    assert bad == 0  # a better BLEU starts the count again
    assert not out_of_patience(100, 0)  # patience 0 never stops


def test_to_average_names_the_best_n_best_first():
    best, _, _ = run_evals([10.0, 30.0, 20.0], keep=3)
    assert to_average(best, 2) == ["best-step2.pt", "best-step3.pt"]
    assert to_average(best, 5) == ["best-step2.pt", "best-step3.pt", "best-step1.pt"]
