"""Research decoding on a trained checkpoint: sampling and forced scoring against greedy and
beam 5, in sentences per second (best of 3 after one warm-up run each).

    python -m bench.research_trained [CHECKPOINT] [SOURCE_FILE]

Defaults: the toy model `make demo` trains and its test sources. The speed benchmark's own
research rows (bench/bench.py) use a randomly initialised model, whose flat distributions
run every output to its length limit and put most of the vocabulary in a top-p nucleus;
a trained model shows what users see.
"""

import sys
import time

import torch

from seq2seq.translate import Translator


def best_of(run, rounds: int = 3) -> float:
    """The shortest wall time of `rounds` calls of run(), after one untimed call."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str]) -> None:
    checkpoint = argv[0] if argv else "runs/toy/best.pt"
    source = argv[1] if len(argv) > 1 else "data/toy/test.src"
    torch.set_num_threads(2)
    t = Translator.from_checkpoint(checkpoint, "cpu")
    with open(source, encoding="utf-8") as f:
        src = f.read().splitlines()
    hyp = t.translate(src, beam_size=1)
    runs = [("greedy", lambda: t.translate(src, beam_size=1)),
            ("beam 5", lambda: t.translate(src, beam_size=5)),
            ("sample (temperature 1)", lambda: t.sample(src, seed=0)),
            ("sample top-p 0.9, 4 each", lambda: t.sample(src, n=4, top_p=0.9, seed=0)),
            ("score (forced decoding)", lambda: t.score(src, hyp))]
    print(f"{checkpoint} on {source}, {len(src)} sentences, {torch.get_num_threads()} threads")
    for name, run in runs:
        seconds = best_of(run)
        print(f"{name:26s} {seconds:6.2f} s {len(src) / seconds:8.1f} sent/s")


if __name__ == "__main__":
    main(sys.argv[1:])
