#!/usr/bin/env bash
# Builds Outpost.xcframework (device aarch64-apple-ios and simulator aarch64-apple-ios-sim
# static libraries, with the generated Swift bindings' C header and module map) into
# target/ios/. Run on macOS with Xcode and
# `rustup target add aarch64-apple-ios aarch64-apple-ios-sim`.
# Phones build without PDF/HTML parsing and the direct Postgres transport.
# NOT RUN on the machines this was written on (Linux, no Xcode).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="$ROOT/target/ios"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cd "$ROOT"
for target in aarch64-apple-ios aarch64-apple-ios-sim; do
    cargo build --release -p outpost-ffi --lib --no-default-features --target "$target"
done
cargo build --quiet -p outpost-ffi --features bindgen --bin uniffi-bindgen
rm -rf "$OUT" && mkdir -p "$OUT/headers" "$OUT/swift"
"$TARGET_DIR/debug/uniffi-bindgen" generate \
    --library "$TARGET_DIR/aarch64-apple-ios/release/liboutpost_ffi.a" \
    --language swift --out-dir "$OUT/swift"
mv "$OUT/swift/"*.h "$OUT/headers/"
mv "$OUT/swift/outpost_ffiFFI.modulemap" "$OUT/headers/module.modulemap"
xcodebuild -create-xcframework \
    -library "$TARGET_DIR/aarch64-apple-ios/release/liboutpost_ffi.a" -headers "$OUT/headers" \
    -library "$TARGET_DIR/aarch64-apple-ios-sim/release/liboutpost_ffi.a" -headers "$OUT/headers" \
    -output "$OUT/Outpost.xcframework"
echo "built $OUT/Outpost.xcframework and $OUT/swift/outpost_ffi.swift"
