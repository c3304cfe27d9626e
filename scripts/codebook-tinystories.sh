#!/usr/bin/env bash
# Issue 13's TinyStories figure, Loupe's substitute for the paper's (see
# docs/codebooks.md, "The TinyStories result"): a one-layer story model with
# a codebook per attention head, trained by organism/tokfsm/train/train_text.py,
# then the tutorial's topic-steering measure run by `loupe codebook topic`.
#
#   scripts/codebook-tinystories.sh prepare CORPUS.txt DATA   # CPU: split, tokenizer
#   scripts/codebook-tinystories.sh train DATA MODEL          # a GPU (35-50 s on an H200)
#   scripts/codebook-tinystories.sh topic DATA MODEL OUT      # CPU: codes and steering
#
# CORPUS.txt is TinyStories text, one story a line, paragraphs separated by
# blank lines. Hugging Face (the dataset, the paper's model) is out of reach
# here; the run in docs/codebooks.md used the 4.2 MB of lower-cased stories
# that the GitHub repository Arnoochka/Transformer-Parallelism committed as
# tinystories.txt (commit 911b9e7), so `topic` lower-cases the prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-/work/venv/bin/python}"
case "${1:-}" in
prepare)
  "$py" organism/tokfsm/train/train_text.py prepare --corpus "$2" --out "$3" ;;
train)
  "$py" organism/tokfsm/train/train_text.py train --data "$2" --out "$3" --pretrain-epochs 20 --epochs 20 \
    --pretrain-max-seconds 40 --max-seconds 55 --eval-every 30 --log-every 50 --shard-mb 15 \
    --codes "${CODES:-4096}" --parallel-residual "${PARALLEL:-on}" ;;  # the second model: CODES=16384 PARALLEL=off
topic)
  bin="${TMPDIR:-/tmp}/loupe-codebook-topic"
  go build -o "$bin" ./cmd/loupe
  mkdir -p "$4"
  # the reference's own search (codes where the word starts), then the
  # story scope (codes of the passages about the topic), on 2000 stories
  "$bin" codebook topic "$3" --corpus "$2/train.jsonl" --lowercase-prompts --scope token \
    --out "$4/token.json" | tee "$4/token.txt"
  "$bin" codebook topic "$3" --corpus "$2/train.jsonl" --lowercase-prompts --scope story --topk 8 \
    --min-precision 0.2 --out "$4/story.json" | tee "$4/story.txt"
  "$bin" codebook topic "$3" --corpus "$2/train.jsonl" --lowercase-prompts --scope story --topk 8 \
    --min-precision 0 --out "$4/story-all.json" | tee "$4/story-all.txt"
  "$bin" codebook topic "$3" --corpus "$2/train.jsonl" --lowercase-prompts --scope story --topk 8 \
    --min-precision 0.2 --max-codes 8 --out "$4/story8.json" | tee "$4/story8.txt" ;;
*)
  echo "usage: $0 prepare CORPUS DATA | train DATA MODEL | topic DATA MODEL OUT" >&2
  exit 2 ;;
esac
