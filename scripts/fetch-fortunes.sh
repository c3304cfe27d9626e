#!/usr/bin/env bash
# Fetches a small real English text corpus into the Loupe cache, once, and
# prints its path: the quotations of Debian's "fortunes" package
# (1:1.99.1-7.3, Debian main; fortune-mod is BSD-licensed, the collection
# is redistributed by Debian with it), one JSON line {"text": ...} per
# quotation, ascii-art left out. About 2.5 MB of text, some 700K SmolLM2
# tokens. The .deb is checked against its SHA-256; the cache is
# $LOUPE_CACHE, else ~/.cache/loupe; never the repository.
set -euo pipefail
cache="${LOUPE_CACHE:-$HOME/.cache/loupe}"
out="$cache/fortunes-1.99.1-7.3.jsonl"
version=1:1.99.1-7.3
want=41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5
if [ ! -s "$out" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching the fortunes corpus (Debian package fortunes=$version, ~850 KB) into $cache" >&2
  if ! (cd "$tmp" && apt-get download "fortunes=$version" >/dev/null 2>&1); then
    apt-get update -qq >/dev/null
    (cd "$tmp" && apt-get download "fortunes=$version" >/dev/null 2>&1)
  fi
  deb=$(echo "$tmp"/fortunes_*.deb)
  got=$(sha256sum "$deb" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    echo "fetch-fortunes: $deb has sha256 $got, expected $want" >&2
    exit 1
  fi
  dpkg-deb -x "$deb" "$tmp/x"
  python3 - "$tmp/x/usr/share/games/fortunes" "$out.part" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
n = 0
with open(dst, "w", encoding="utf-8") as out:
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if name.endswith((".dat", ".u8")) or name == "ascii-art" or os.path.islink(path) or not os.path.isfile(path):
            continue
        text = open(path, encoding="utf-8", errors="replace").read()
        for q in text.split("\n%\n"):
            q = q.strip("%\n").rstrip()
            if q.strip():
                out.write(json.dumps({"text": q, "source": name}) + "\n")
                n += 1
print(f"fetch-fortunes: {n} quotations", file=sys.stderr)
PY
  mv "$out.part" "$out"
fi
echo "$out"
