#!/usr/bin/env bash
# Quickstart on a fresh machine: build outpost, fetch the default embedding model, ingest the
# example corpus and search it. Needs the Rust toolchain and python3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

export OUTPOST_DB="${OUTPOST_DB:-$PWD/.cache/quickstart.db}"

echo "==> building outpost (release)"
cargo build --release --quiet -p outpost
outpost=target/release/outpost

echo "==> fetching the default embedding model"
"$outpost" models fetch

echo "==> ingesting examples/corpus into $OUTPOST_DB"
"$outpost" ingest examples/corpus

echo "==> outpost search \"how do I keep a sourdough starter alive\" -k 5"
"$outpost" search "how do I keep a sourdough starter alive" -k 5

echo
echo "==> outpost search \"battery bank for a cabin fridge\" --filter source=$PWD/examples/corpus/solar -k 3"
"$outpost" search "battery bank for a cabin fridge" --filter "source=$PWD/examples/corpus/solar" -k 3

echo
echo "==> outpost context \"what size battery bank for a cabin fridge\" --budget 250"
"$outpost" context "what size battery bank for a cabin fridge" --budget 250

echo
echo "==> fetching the default chat model (SmolLM2-135M-Instruct, GGUF Q4_1, 98 MB)"
"$outpost" models fetch --llm

echo
echo "==> outpost ask \"how do I count the varroa mites in a hive\" --max-tokens 96"
"$outpost" ask "how do I count the varroa mites in a hive" --max-tokens 96
