"""Data benchmark: prepare and train on toy corpora of growing size, to show that corpus
size costs disk and one-off encoding time, not memory, start-up time or speed.

Usage, from the repository root:

    python -m bench.data [--sizes 100000 1000000 5000000] [--steps 40] [--work runs/bench-data]

For each size (and the 29,000-pair corpus, Multi30k's size, as the reference) it writes a
toy corpus with the bundled generator (seq2seq/corpora/toy.py) under --work (never
committed), runs `seq2seq prepare` and then `seq2seq train` (the toy recipe with a small
model, SMALL, and the store already built) as child processes, and prints: prepare time
split into SentencePiece (sampling and training) and encoding, pairs encoded per second,
store size on disk, each command's peak resident memory (its largest process) and the
training process's peak anonymous memory, the time from `train` starting to its first
step done, and training steps per second.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = 29_000  # Multi30k's training pairs: the size every other row is compared with
CHUNK = 200_000  # pairs generated at once (the generator keeps a chunk in memory)
DEV = 500
CONFIG = str(ROOT / "configs/toy.yaml")
# The toy recipe's model made small, so that a step is short and what feeding it costs shows.
SMALL = ["model.d_model=64", "model.d_ff=256", "train.batch_tokens=1500", "train.threads=1"]


def write_corpus(folder: Path, n: int, seed: int = 11) -> Path:
    """folder/train.{src,tgt} with n toy pairs (reused when already there), and dev."""
    from seq2seq.corpora.toy import generate_pairs

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / f".complete-{n}"
    if not done.is_file():
        with open(folder / "train.src", "w") as src, open(folder / "train.tgt", "w") as tgt:
            for k in itertools.count():
                size = min(CHUNK, n - k * CHUNK)
                if size <= 0:
                    break
                pairs = generate_pairs(size, seed + k)  # distinct within a chunk
                src.write("".join(s + "\n" for s, _ in pairs))
                tgt.write("".join(t + "\n" for _, t in pairs))
        pairs = generate_pairs(DEV, seed - 1)
        for side, i in (("src", 0), ("tgt", 1)):
            (folder / f"dev.{side}").write_text("".join(p[i] + "\n" for p in pairs))
        done.touch()
    return folder


def run(args: list[str]) -> dict:
    """Run `python -m seq2seq ARGS`: its output lines with the second each came, seconds,
    exit code, peak resident MiB of its largest process (ru_maxrss, which counts the pages
    of a memory-mapped store it touched) and the peak of its own anonymous memory (RssAnon,
    sampled every 50 ms: what it holds beyond files it maps)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "seq2seq", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    anon, done = [0.0], threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                return
            found = re.search(r"RssAnon:\s+(\d+) kB", status)
            anon[0] = max(anon[0], int(found.group(1)) / 1024 if found else 0.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines = [(time.perf_counter() - start, line.rstrip("\n")) for line in child.stdout]
    done.set()
    watcher.join()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not all children's
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"lines": lines, "seconds": time.perf_counter() - start, "code": child.returncode,
            "peak_mib": usage.ru_maxrss / 1024, "anon_mib": anon[0]}


def seconds_in(lines: list[tuple[float, str]], pattern: str) -> float:
    """The number of seconds a log line matching `pattern` (one group) reports, summed."""
    total = 0.0
    for _, line in lines:
        if found := re.search(pattern, line):
            minutes, _, secs = found.group(1).rpartition("m")
            total += float(minutes or 0) * 60 + float(secs.rstrip("s"))
    return total


def settings(folder: Path) -> list[str]:
    """--set arguments for the toy recipe on the corpus in `folder`, run dir beside it."""
    sets = [f"data.train={folder}/train", f"data.dev={folder}/dev", "data.test=",
            f"train.run_dir={folder / 'run'}"]
    return [a for s in sets for a in ("--set", s)]


def prepare(folder: Path, n: int) -> dict:
    """`seq2seq prepare` afresh on the corpus in `folder`: its times, sizes and memory."""
    shutil.rmtree(folder / "run", ignore_errors=True)
    prep = run(["prepare", CONFIG, *settings(folder)])
    lines = prep["lines"]
    if prep["code"] != 0:
        raise SystemExit(f"prepare failed on {n} pairs:\n" + "\n".join(t for _, t in lines))
    encoding_s = seconds_in(lines, r"built in ((?:\d+m)?[\d.]+s)")
    return {"pairs": n, "prepare_s": prep["seconds"],
            "tokenizer_s": seconds_in(lines, r"SentencePiece model, .* in ([\d.]+)s$"),
            "encoding_s": encoding_s, "pairs_per_s": n / encoding_s if encoding_s else 0.0,
            "store_mib": sum(p.stat().st_size for p in (folder / "run/store").iterdir())
            / 2**20, "prepare_mib": prep["peak_mib"], "prepare_anon_mib": prep["anon_mib"],
            "summary": next(t for _, t in lines if " pairs read, " in t)}


def train(folder: Path, n: int, steps: int) -> dict:
    """`seq2seq train` for `steps` steps, the store built: start-up, speed and memory."""
    sets = [*SMALL, f"train.max_steps={steps}", "train.log_every=1",
            "train.eval_every=1000000", "train.eval_max_sentences=8"]
    fit = run(["train", CONFIG, "--no-progress", "--overwrite", *settings(folder),
               *(a for s in sets for a in ("--set", s))])
    if fit["code"] != 0:
        raise SystemExit(f"train failed on {n} pairs:\n" +
                         "\n".join(t for _, t in fit["lines"]))
    step_at = {int(m.group(1)): t for t, line in fit["lines"]
               if (m := re.match(r"step (\d+)/\d+ \|", line))}
    first, last = min(step_at), max(step_at)
    warm = min(10, last - 1)  # the first steps include one-off set-up
    return {"train_mib": fit["peak_mib"], "train_anon_mib": fit["anon_mib"],
            "first_step_s": step_at[first],
            "steps_per_s": (last - warm) / (step_at[last] - step_at[warm])}


def table(rows: list[dict]) -> str:
    header = ("pairs", "prepare s", "tokenizer s", "encoding s", "pairs/s", "store MiB",
              "prepare peak MiB", "train peak MiB", "train anon MiB", "first step s",
              "steps/s")
    cells = [(f"{r['pairs']:,}", f"{r['prepare_s']:.1f}", f"{r['tokenizer_s']:.1f}",
              f"{r['encoding_s']:.1f}", f"{r['pairs_per_s']:,.0f}", f"{r['store_mib']:,.1f}",
              f"{r['prepare_mib']:,.0f}", f"{r['train_mib']:,.0f}",
              f"{r['train_anon_mib']:,.0f}", f"{r['first_step_s']:.1f}",
              f"{r['steps_per_s']:.2f}") for r in rows]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
             for row in [header, *cells]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--steps", type=int, default=40, help="training steps per size")
    parser.add_argument("--rounds", type=int, default=2,
                        help="training runs per size, interleaved; medians are reported")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-data")
    args = parser.parse_args(argv)
    sizes, rows = [REFERENCE, *args.sizes], []
    for n in sizes:
        print(f"bench.data: {n:,} pairs: writing the corpus, then prepare", file=sys.stderr,
              flush=True)
        rows.append(prepare(write_corpus(args.work / str(n), n), n))
        print(f"  {rows[-1]['summary']}", file=sys.stderr, flush=True)
    runs = {n: [] for n in sizes}
    for round_ in range(args.rounds):  # side by side: every size once per round
        for n in sizes:
            print(f"bench.data: round {round_ + 1}: train {args.steps} steps on {n:,} pairs",
                  file=sys.stderr, flush=True)
            runs[n].append(train(args.work / str(n), n, args.steps))
    for row in rows:
        done = runs[row["pairs"]]
        row.update(train_mib=max(r["train_mib"] for r in done),
                   train_anon_mib=max(r["train_anon_mib"] for r in done),
                   first_step_s=statistics.median(r["first_step_s"] for r in done),
                   steps_per_s=statistics.median(r["steps_per_s"] for r in done),
                   rounds=done)
    print(table(rows))
    (args.work / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    load = os.getloadavg()[0]
    print(f"\n{os.cpu_count()} CPUs, 1-minute load average {load:.1f} at the end; peak MiB is "
          "ru_maxrss of the command's largest process (it counts the store pages training "
          "touched), anon MiB the training process's peak anonymous memory (sampled); first "
          "step s is from `train` starting to step 1 logged, with the store built; steps/s "
          "from step 10 on.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
