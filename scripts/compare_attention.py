"""Compare attention scores and the RNN baseline at equal training time; print a Markdown table.

    .venv/bin/python scripts/compare_attention.py configs/toy.yaml --time 100s
    .venv/bin/python scripts/compare_attention.py configs/multi30k_de_en.yaml --time 20m \
        --variants scaled_dot rnn-additive rnn-none --set train.warmup=150

Each variant trains with `seq2seq train CONFIG --set ...` for the same training-time budget
(train.max_time), then `seq2seq evaluate` scores its best checkpoint on data.test with
beam 5. Training tokens per second are the mean over metrics.jsonl's training rows.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "scaled_dot": ["model.attention=scaled_dot"],
    "dot": ["model.attention=dot"],
    "cosine": ["model.attention=cosine"],
    "general": ["model.attention=general"],
    "additive": ["model.attention=additive"],
    "rnn-additive": ["model.arch=rnn", "model.attention=additive"],
    "rnn-general": ["model.arch=rnn", "model.attention=general"],
    "rnn-none": ["model.arch=rnn", "model.attention=none"],
}


def seq2seq(*args: str) -> str:
    """Run the CLI (the same Python) and return stdout; fail loudly."""
    done = subprocess.run([sys.executable, "-m", "seq2seq", *args], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"seq2seq {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def run_variant(config: str, name: str, budget: str, out_root: Path,
                extra: list[str]) -> dict:
    """Train one variant for `budget`, evaluate it; return a table row."""
    run_dir = out_root / name
    sets = [*extra, *VARIANTS[name], f"train.run_dir={run_dir}", f"train.max_time={budget}",
            "train.max_steps=0", "train.max_epochs=0"]
    seq2seq("train", config, "--overwrite", "--no-progress",
            *[a for s in sets for a in ("--set", s)])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    steps = max(r["step"] for r in rows)
    scores = json.loads(seq2seq("evaluate", str(run_dir / "best.pt"), "--beam-size", "5",
                                "--json"))
    params = seq2seq("info", str(run_dir / "best.pt")).splitlines()
    total = next(line.split()[-1] for line in params if line.startswith("total"))
    return {"variant": name, "bleu": scores["bleu"], "chrf": scores["chrf"],
            "tok_s": sum(speeds) / max(len(speeds), 1), "steps": steps, "params": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--time", default="100s", help="training budget per variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="runs/compare", help="parent of the run directories")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every variant (repeatable)")
    args = parser.parse_args()
    print(f"| variant | test BLEU (beam 5) | chrF2 | train tok/s | steps in {args.time} "
          "| parameters |")
    print("|---|---|---|---|---|---|")
    for name in args.variants:
        r = run_variant(args.config, name, args.time, Path(args.out), args.set)
        print(f"| {r['variant']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['tok_s']:.0f} "
              f"| {r['steps']} | {r['params']} |", flush=True)


if __name__ == "__main__":
    main()
