#!/usr/bin/env bash
# Builds the library for Android (arm64-v8a, and x86_64 for the emulator) with cargo-ndk and
# generates its Kotlin bindings into the Gradle module cross/android/outpost:
#   src/main/jniLibs/<abi>/liboutpost_ffi.so and src/main/kotlin/uniffi/outpost_ffi/outpost_ffi.kt
#
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`, and
# `rustup target add aarch64-linux-android x86_64-linux-android`. Phones build without PDF/HTML
# parsing and the direct Postgres transport (sync goes through the Supabase REST API); set
# OUTPOST_FFI_FEATURES to add them back. NOT RUN on the machines this was written on (no NDK).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODULE="$ROOT/cross/android/outpost"
cd "$ROOT"
features=(--no-default-features)
[ -n "${OUTPOST_FFI_FEATURES:-}" ] && features+=(--features "$OUTPOST_FFI_FEATURES")
cargo ndk -t arm64-v8a -t x86_64 -o "$MODULE/src/main/jniLibs" \
    build --release -p outpost-ffi --lib "${features[@]}"
cargo build --quiet -p outpost-ffi --features bindgen --bin uniffi-bindgen
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/uniffi-bindgen" generate \
    --library "$MODULE/src/main/jniLibs/arm64-v8a/liboutpost_ffi.so" \
    --language kotlin --out-dir "$MODULE/src/main/kotlin"
echo "built $MODULE"
