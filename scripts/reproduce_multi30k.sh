#!/usr/bin/env bash
# Reproduce a Multi30k result: download, train (the recipe's train.max_steps), average,
# evaluate.
#   scripts/reproduce_multi30k.sh de_en [--mirror DIR] [--seeds N] [--set section.key=value ...]
# --seeds N trains seeds 1..N side by side, one thread each, into RUN_s1 .. RUN_sN, and
# scores their ensemble (`seq2seq translate A.pt B.pt`): docs/results.md, "two seeds".
# Prints Markdown table rows (cased, lowercased, and the papers' protocol where sacremoses is
# installed): direction, protocol, BLEU, chrF, training time, checkpoint.
# Trains into runs/multi30k_DIRECTION, replacing what is there, unless an override sets
# train.run_dir (for example a longer run: --set train.max_steps=6000 --set train.run_dir=runs/x).
set -euo pipefail
cd "$(dirname "$0")/.."
direction=${1:?usage: scripts/reproduce_multi30k.sh de_en|en_de [--mirror DIR] [--set k=v ...]}
shift
run=runs/multi30k_${direction}
mirror=()
overrides=()
seeds=0
while [ $# -gt 0 ]; do
  case "$1" in --mirror|--set|--seeds) [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; } ;; esac
  case "$1" in
    --mirror) mirror=(--mirror "$2"); shift 2 ;;
    --seeds)
      case "$2" in [1-9]|[1-9][0-9]) seeds=$2 ;; *) echo "--seeds needs 1-99" >&2; exit 2 ;; esac
      shift 2 ;;
    --set)
      case "$2" in
        train.run_dir=*) run=${2#train.run_dir=} ;;  # each train below is given its own
        *) overrides+=(--set "$2") ;;
      esac
      shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
config=configs/multi30k_${direction}.yaml
[ -f "$config" ] || { echo "no recipe $config" >&2; exit 2; }
BIN=${BIN:-.venv/bin}
src=${direction%_*}
tgt=${direction#*_}

$BIN/seq2seq download multi30k --dir data/multi30k "${mirror[@]}"
runs=()
mkdir -p "$(dirname "$run")"
if [ "$seeds" -eq 0 ]; then
  runs=("$run")
  $BIN/seq2seq train "$config" --overwrite --set "train.run_dir=$run" "${overrides[@]}"
else
  pids=()
  for seed in $(seq 1 "$seeds"); do
    runs+=("${run}_s$seed")
    $BIN/seq2seq train "$config" --overwrite --set "train.run_dir=${run}_s$seed" \
      --set "train.seed=$seed" --set train.threads=1 "${overrides[@]}" \
      > "${run}_s$seed.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "seed $((i + 1)) failed: see ${runs[$i]}.log" >&2; exit 1; }
  done
fi

# Each run's checkpoint with the better validation BLEU: averaged.pt or best.pt.
ckpts=()
for r in "${runs[@]}"; do
  ckpts+=("$($BIN/python - "$r" <<'PY'
import sys
from pathlib import Path
from seq2seq.checkpoint import load_checkpoint
run = Path(sys.argv[1])
found = [p for p in (run / "best.pt", run / "averaged.pt") if p.is_file()]
print(max(found, key=lambda p: load_checkpoint(p)["metrics"].get("bleu", -1.0)))
PY
)")
done
ckpt="${ckpts[*]}"
[ "$seeds" -eq 0 ] || run=${run}_s1  # the ensemble's files go beside the first seed's
test_src=data/multi30k/test_2016_flickr.$src
test_ref=data/multi30k/test_2016_flickr.$tgt
# Translate once; score the translations cased, lowercased and, where download built the
# tokenized reference (it needs sacremoses), the papers' way (docs/evaluation.md).
$BIN/seq2seq translate "${ckpts[@]}" -i "$test_src" -o "$run/test_hyp.$tgt" --beam-size 5
$BIN/seq2seq evaluate --hyp "$run/test_hyp.$tgt" --ref "$test_ref" --json \
  > "$run/test_cased.json"
$BIN/seq2seq evaluate --hyp "$run/test_hyp.$tgt" --ref "$test_ref" --lowercase --json \
  > "$run/test_lowercase.json"
if [ -f "data/multi30k/tok/test_2016_flickr.lc.norm.tok.$tgt" ]; then
  $BIN/seq2seq evaluate --hyp "$run/test_hyp.$tgt" --ref "$test_ref" --json \
    --protocol multi30k-tok > "$run/test_protocols.json"
fi
$BIN/python - "$run" "$direction" "$ckpt" <<'PY'
import json, os, sys
from seq2seq.checkpoint import load_checkpoint
run, direction, ckpt = sys.argv[1:]
progress = load_checkpoint(f"{run}/last.pt")["train_state"]["progress"]
minutes = f"{(progress['elapsed'] - progress['eval_seconds']) / 60:.0f} min"
minutes += f" ({progress['step']:,} steps)"
for case in ("cased", "lowercase"):
    r = json.load(open(f"{run}/test_{case}.json"))
    print(f"| {direction.replace('_', '->')} | {case}, beam 5, `{r['bleu_signature']}` "
          f"| {r['bleu']:.1f} | {r['chrf']:.1f} | {minutes} | {ckpt} |")
if os.path.isfile(f"{run}/test_protocols.json"):
    r = json.load(open(f"{run}/test_protocols.json"))["protocols"]["multi30k-tok"]
    print(f"| {direction.replace('_', '->')} | papers' (multi30k-tok), beam 5, "
          f"`{r['bleu_signature']}` | {r['bleu']:.1f} | | {minutes} | {ckpt} |")
PY
