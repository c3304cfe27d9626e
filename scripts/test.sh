#!/usr/bin/env bash
# The whole test run, as the README gives it and CI runs it:
#  1. fetch the SmolLM2 and Gemma 3 270M GGUFs and the fortunes text corpus
#     into the cache when absent (scripts/fetch-smollm2.sh, fetch-gemma3.sh,
#     fetch-fortunes.sh);
#  2. make sure tmux is there (the TUI's end-to-end test drives the real binary in it);
#  3. gofmt, go vet and every Go test;
#  4. the Python side: notebooks/run_notebooks.sh builds a pinned virtualenv,
#     makes traces with the Go CLI, checks them with pyarrow and executes
#     every notebook headless.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOUPE_SMOLLM2_GGUF="${LOUPE_SMOLLM2_GGUF:-$(scripts/fetch-smollm2.sh)}"
export LOUPE_GEMMA3_GGUF="${LOUPE_GEMMA3_GGUF:-$(scripts/fetch-gemma3.sh)}"
# The real-text corpus (Debian's fortunes): SAE training and the
# needle-in-a-haystack haystack of real text.
export LOUPE_FORTUNES="${LOUPE_FORTUNES:-$(scripts/fetch-fortunes.sh)}"
if ! command -v tmux >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing tmux for the TUI's end-to-end test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux) >/dev/null
  else
    echo "test.sh: tmux is missing; the TUI's end-to-end test will skip" >&2
  fi
fi
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# One static binary uses a GPU where there is one: the GPU backend must
# build without cgo (its tests check --device cuda fails cleanly here).
CGO_ENABLED=0 go build -o /dev/null ./cmd/loupe
go test -count=1 -timeout 25m ./...
notebooks/run_notebooks.sh
