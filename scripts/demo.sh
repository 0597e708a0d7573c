#!/usr/bin/env bash
# The demo: train on the bundled toy data, translate a few sentences, score the test set.
# Run through `make demo`, which installs first. Re-running starts the toy run afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=runs/toy

start=$(date +%s)
$BIN/seq2seq train configs/toy.yaml --overwrite
echo "training took $(( $(date +%s) - start ))s"

echo
echo "== translate (beam 5) =="
$BIN/seq2seq translate $RUN/best.pt \
  "the big dog sees two small cats ." \
  "we sang near the old house ." \
  "the sad teacher waited ."

echo
echo "== evaluate on data/toy/test (beam 5) =="
$BIN/seq2seq evaluate $RUN/best.pt --src data/toy/test.src --ref data/toy/test.tgt --beam-size 5
