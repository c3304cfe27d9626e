#!/usr/bin/env bash
# The Python half of the test run: the Arrow contract test and the
# notebooks, on trace files this same run makes with the Go CLI.
#
#  1. a virtualenv with notebooks/requirements.txt (cached outside the
#     repository, keyed by the requirements' hash: $LOUPE_CACHE or
#     ~/.cache/loupe);
#  2. traces made by the Go CLI on the embedded model organism:
#     `loupe demo` (tokens, attention, head scores, rollout and flow) and
#     `loupe trace` (activations, full or top-k attention, logit lens;
#     float32/zstd and float16/lz4), plus the synthetic sample of
#     store/internal/sampletrace, which has a row of every table kind,
#     and the feature tables of a small SAE `loupe sae train` makes on
#     the organism (`loupe sae features`); each exported by `loupe export`
#     to Parquet and CSV;
#  3. check_arrow.py: pyarrow reads every column of every file with the
#     types and shapes of docs/schema.md, and the exports back;
#  4. check_saelens.py: SAE folders exported by Loupe (every architecture,
#     written by the Go test TestWriteSAELensFixtures) read as SAELens v6
#     reads them, and a numpy transcription of SAELens's encode/decode
#     reproducing Loupe's latents and reconstructions to 1e-5;
#  5. every notebook executed headless (nbclient) on those traces; a
#     failing cell fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${LOUPE_CACHE:-$HOME/.cache/loupe}"
hash=$( (cat notebooks/requirements.txt; python3 --version) | sha256sum | cut -c1-16)
venv="${LOUPE_NOTEBOOK_VENV:-$cache/notebooks-venv-$hash}"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "run_notebooks: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r notebooks/requirements.txt
  "$venv/bin/python" -m ipykernel install --prefix "$venv" --name python3 >/dev/null
  touch "$venv/.complete"
fi
py="$venv/bin/python"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/loupe" ./cmd/loupe
loupe="$work/loupe"

# The organism is extracted into this run's own cache, so its folder is known.
LOUPE_CACHE="$work/cache" "$loupe" demo --out "$work/demo" --prompts 2 --quiet >/dev/null
organism=$(echo "$work"/cache/organism-*)
cat >"$work/prompts.txt" <<'PROMPTS'
The secret code of white is 53. What is the secret code of white?
one two three four five six seven eight
red green blue red green blue red green blue
PROMPTS
"$loupe" trace --model "$organism" --prompts "$work/prompts.txt" --quiet \
  --hooks 'blocks.*.hook_resid_post,blocks.*.mlp.hook_post' --logit-lens 5 --out "$work/trace.arrow" >/dev/null
"$loupe" trace --model "$organism" --prompts "$work/prompts.txt" --quiet --attention topk --topk 4 \
  --dtype float16 --compression lz4 --hooks 'blocks.*.hook_resid_post' --out "$work/trace16.arrow" >/dev/null
go run ./store/testdata/mksample -out "$work/sample.arrow" -compression none
# An ablation experiment on the organism: its previous-token heads, which
# its induction needs (organism/model/README.md), against random heads.
"$loupe" heads ablate --model "$organism" --heads 1.0,1.1 --task induction --seeds 3 --quiet \
  --out "$work/ablation.arrow" >/dev/null

# A small TopK SAE on the organism and its feature tables (sae_features.ipynb).
LOUPE_CACHE="$work/cache" "$loupe" sae train --hook blocks.2.hook_resid_post --arch topk --k 8 --expansion 2 \
  --tokens 8192 --batch 256 --ctx 65 --organism-docs 2000 --eval-tokens 1024 --eval-contexts 2 --quiet --out "$work/sae" >/dev/null
LOUPE_CACHE="$work/cache" "$loupe" sae features "$work/sae" --tokens 4096 --ctx 65 --organism-docs 2000 \
  --prompt "The day after Monday is Tuesday." --out "$work/features.arrow" >/dev/null
export LOUPE_FEATURES="$work/features.arrow"

# The codes of the TokFSM codebook model (organism/tokfsm/model), labelled by state.
"$loupe" codebook codes organism/tokfsm/model --prompts 16 --out "$work/codes.arrow" >/dev/null

traces=("$work/demo/trace.arrow" "$work/trace.arrow" "$work/trace16.arrow" "$work/sample.arrow" "$work/ablation.arrow" "$work/features.arrow" "$work/codes.arrow")
for t in "${traces[@]}"; do
  "$loupe" ls "$t" >/dev/null
  "$loupe" export "$t" --to parquet >/dev/null
  "$loupe" export "$t" --to csv >/dev/null
done

(cd notebooks && "$py" check_arrow.py "${traces[@]}")
LOUPE_SAE_FIXTURES="$work/saelens" go test -count=1 -run '^TestWriteSAELensFixtures$' ./sae >/dev/null
"$py" notebooks/check_saelens.py "$work"/saelens/* "$work/sae"

out="${LOUPE_NOTEBOOK_OUT:-$work/executed}"
run() { # NAME [VAR=VALUE...]: execute every notebook with that environment
  local name=$1
  shift
  env LOUPE_ABLATION="$work/ablation.arrow" "$@" MPLBACKEND=module://matplotlib_inline.backend_inline "$py" notebooks/run_notebooks.py "$out/$name"
}
run organism LOUPE_TRACE="$work/trace.arrow" LOUPE_HEADS="$work/demo/trace.arrow" LOUPE_PROMPT=0 LOUPE_CODES="$work/codes.arrow"
run demo LOUPE_TRACE="$work/demo/trace.arrow" LOUPE_PROMPT=1 LOUPE_SCORE=retrieval
run sample LOUPE_TRACE="$work/sample.arrow" LOUPE_PROMPT=2 LOUPE_SCORE=prev_token
echo "run_notebooks: ok"
