"""Paired benchmark of two source trees: rounds of both, alternately, in subprocesses.

Usage, from the repository root:

    python -m bench.paired [--old /tmp/base] [--new .] [--rounds 3] [--quick]
                           [--skip-train] [--skip-decode] [--steps N] [--threads N]
                           [--old-args "..."] [--new-args "..."] [--out FILE]

Each round runs the benchmark of one tree and then of the other (the order alternates
from round to round, so a drift of the host's speed favours neither), prints both
trees' figures and the ratio new / old of each, and the end prints each figure's median
ratio over the rounds. A tree's benchmark is `python -m bench.bench` where it has
bench/bench.py, else `python scripts/bench.py` (the layout before bench/ existed); it
runs with the tree first on PYTHONPATH and its own token cache. The Multi30k text is
unpacked once and given to both with --data.

The same tree twice compares its two paths: `--old . --old-args=--plain --new .` gives
what the fast path (seq2seq/fast) buys over the plain reference path.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_command(tree: Path, args: list[str]) -> list[str]:
    """The command line that runs `tree`'s benchmark with `args`."""
    if (tree / "bench" / "bench.py").is_file():
        return [sys.executable, "-m", "bench.bench", *args]
    if (tree / "scripts" / "bench.py").is_file():
        return [sys.executable, "scripts/bench.py", *args]
    raise SystemExit(f"error: {tree} has neither bench/bench.py nor scripts/bench.py")


def run_bench(tree: Path, args: list[str], log: Path) -> dict:
    """Run `tree`'s benchmark once with --json; returns its result (stderr goes to log)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with open(log, "w") as err:
        done = subprocess.run(bench_command(tree, [*args, "--json"]), cwd=tree, env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"error: the benchmark of {tree} exited {done.returncode}:\n{tail}")
    return json.loads(done.stdout)


def figures(result: dict) -> dict[str, float]:
    """The figures a comparison reads from one benchmark result, by name.

    Names ending in "/s" are rates (higher is better), in "ms" times (lower is better).
    """
    out = {}
    for precision, row in result.get("train", {}).items():
        if isinstance(row, dict):
            out[f"train {precision} tok/s"] = row["tokens_per_s"]
    decode = result.get("decode", {})
    for row in decode.get("search", []):
        name = "greedy" if row["beam_size"] == 1 else f"beam {row['beam_size']}"
        out[f"decode {name} sent/s"] = row["sentences_per_s"]
    for row in decode.get("per_step", []):
        name = "greedy" if row["beam_size"] == 1 else f"beam {row['beam_size']}"
        for length, ms in row["ms_per_step"].items():
            out[f"step {name} L={length} ms"] = ms
    return out


def print_round(number: int, order: list[str], old: dict, new: dict) -> dict[str, float]:
    """Print one round's table; returns its ratios new / old by figure."""
    print(f"\nround {number} (ran {' then '.join(order)})")
    print(f"{'figure':<28} {'old':>10} {'new':>10} {'new/old':>8}")
    ratios = {}
    for name in old:
        if name in new and old[name] > 0:
            ratios[name] = new[name] / old[name]
            print(f"{name:<28} {old[name]:>10.2f} {new[name]:>10.2f} {ratios[name]:>8.3f}")
    sys.stdout.flush()
    return ratios


def print_summary(rounds: list[dict[str, float]]) -> None:
    print(f"\nmedian new/old over {len(rounds)} round(s) (rates: > 1 is faster; ms: < 1 is)")
    for name in rounds[0]:
        values = [r[name] for r in rounds if name in r]
        spread = f"  (min {min(values):.3f}, max {max(values):.3f})" if len(values) > 1 else ""
        print(f"{name:<28} {statistics.median(values):>8.3f}{spread}")


def prepare_data(data: Path | None, mirror: Path | None, work: Path) -> Path:
    """The folder of Multi30k's text files both benchmarks read: `data`, or unpacked once."""
    if data is not None:
        return data
    from bench.bench import DEFAULT_MIRROR
    from seq2seq.corpora.multi30k import download_multi30k

    if mirror is None and DEFAULT_MIRROR.is_dir():
        mirror = DEFAULT_MIRROR
    dest = work / "multi30k"
    download_multi30k(dest, mirror=mirror, progress=False)
    return dest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, default=Path("/tmp/base"), help="the tree before")
    parser.add_argument("--new", type=Path, default=ROOT, help="the tree after (this one)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both trees")
    parser.add_argument("--quick", action="store_true", help="pass --quick to both")
    parser.add_argument("--skip-train", action="store_true", help="pass --skip-train to both")
    parser.add_argument("--skip-decode", action="store_true", help="pass --skip-decode to both")
    parser.add_argument("--steps", type=int, default=0, help="pass --steps N to both")
    parser.add_argument("--threads", type=int, default=0, help="pass --threads N to both")
    parser.add_argument("--old-args", default="", help="more options for the old tree's run")
    parser.add_argument("--new-args", default="", help="more options for the new tree's run")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with Multi30k's text files (default: unpack the mirror)")
    parser.add_argument("--mirror", type=Path, default=None, help="folder of Multi30k .gz files")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "paired",
                        help="where the data, the two token caches and the logs go")
    parser.add_argument("--out", type=Path, default=None, help="write every result as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.data, args.mirror, args.work)
    common = [flag for flag, on in (("--quick", args.quick), ("--skip-train", args.skip_train),
                                    ("--skip-decode", args.skip_decode)) if on]
    common += ["--steps", str(args.steps)] if args.steps else []
    common += ["--threads", str(args.threads), "--data", str(data.resolve())]
    trees = {"old": (args.old.resolve(), shlex.split(args.old_args)),
             "new": (args.new.resolve(), shlex.split(args.new_args))}
    print(f"old: {trees['old'][0]} {args.old_args}\nnew: {trees['new'][0]} {args.new_args}")
    rounds, raw = [], []
    for number in range(1, args.rounds + 1):
        order = ["old", "new"] if number % 2 else ["new", "old"]
        results = {}
        for label in order:
            tree, extra = trees[label]
            cache, log = args.work / f"cache-{label}", args.work / f"{label}-{number}.log"
            results[label] = run_bench(tree, [*common, "--cache", str(cache), *extra], log)
        raw.append(results)
        rounds.append(print_round(number, order, figures(results["old"]),
                                  figures(results["new"])))
    print_summary(rounds)
    if args.out is not None:
        args.out.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
