#!/usr/bin/env bash
# Builds the FFI library (outpost-ffi) and generates its bindings with the in-repository
# uniffi-bindgen: Python, Kotlin and Swift, each in its own folder under OUT (default
# target/bindings). The Python folder also gets the library itself, so that
# `PYTHONPATH=OUT/python python3 -c 'import outpost_ffi'` works.
#
#   cross/scripts/bindings.sh [OUT]
#   OUTPOST_FFI_PROFILE=debug cross/scripts/bindings.sh   # tests
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/target/bindings}"
PROFILE="${OUTPOST_FFI_PROFILE:-release}"
FEATURES="${OUTPOST_FFI_FEATURES:-}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

cd "$ROOT"
# Only the shared library: the static one is for iOS and large.
build=(cargo rustc --quiet -p outpost-ffi --lib --crate-type cdylib)
[ "$PROFILE" = release ] && build+=(--release)
[ -n "$FEATURES" ] && build+=(--features "$FEATURES")
"${build[@]}"
LIB="$TARGET_DIR/$PROFILE/liboutpost_ffi.so"
[ -f "$LIB" ] || { echo "bindings.sh: $LIB was not built" >&2; exit 1; }

cargo build --quiet -p outpost-ffi --features bindgen --bin uniffi-bindgen
BINDGEN="$TARGET_DIR/debug/uniffi-bindgen"
for language in python kotlin swift; do
    rm -rf "$OUT/$language"
    mkdir -p "$OUT/$language"
    "$BINDGEN" generate --library "$LIB" --language "$language" --out-dir "$OUT/$language" >/dev/null
done
cp "$LIB" "$OUT/python/"
echo "$OUT"
