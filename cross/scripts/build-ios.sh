#!/usr/bin/env bash
# Builds the iOS package into target/ios/:
#   Outpost.xcframework   static libraries for devices (aarch64-apple-ios) and the simulator
#                         (aarch64-apple-ios-sim), each with the C header and module map of the
#                         bindings (module `outpost_ffiFFI`);
#   swift/outpost_ffi.swift  the UniFFI Swift bindings to add to the app's target.
#
#   cross/scripts/build-ios.sh [--bindings DIR] [--allow-missing-libs]
#
# The libraries use the `mobile` profile and `--no-default-features` (no PDF/HTML parsing, no
# direct Postgres; sync through the Supabase REST API). They need macOS with Xcode (the iOS SDK
# and `xcodebuild`) and `rustup target add aarch64-apple-ios aarch64-apple-ios-sim`. Elsewhere the
# script makes the Swift bindings, header and module map (the same for every target: the Swift
# suite, cross/scripts/check-swift.sh, compiles them on Linux), says what it could not build and
# fails, unless --allow-missing-libs (scripts/test.sh checks it that way on Linux).
# --bindings DIR reuses bindings made by cross/scripts/bindings.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$TARGET_DIR/ios"
TARGETS=(aarch64-apple-ios aarch64-apple-ios-sim)
bindings="" allow_missing=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bindings) bindings="$2"; shift 2 ;;
        --allow-missing-libs) allow_missing=1; shift ;;
        *) echo "build-ios.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$ROOT"
rm -rf "$OUT" && mkdir -p "$OUT/headers" "$OUT/swift"

# 1. The bindings: generated from a host build (the interface is the same on every target).
if [ -z "$bindings" ]; then
    bindings="$TARGET_DIR/bindings"
    OUTPOST_FFI_PROFILE="${OUTPOST_FFI_PROFILE:-debug}" cross/scripts/bindings.sh "$bindings" >/dev/null
fi
[ -f "$bindings/swift/outpost_ffi.swift" ] ||
    { echo "build-ios.sh: no Swift bindings under $bindings" >&2; exit 1; }
cp "$bindings/swift/outpost_ffi.swift" "$OUT/swift/"
cp "$bindings/swift/outpost_ffiFFI.h" "$OUT/headers/"
cp "$bindings/swift/outpost_ffiFFI.modulemap" "$OUT/headers/module.modulemap"

# 2. The static libraries and the XCFramework, where Xcode is.
if command -v xcodebuild >/dev/null 2>&1 && xcrun --sdk iphoneos --show-sdk-path >/dev/null 2>&1; then
    libraries=()
    for target in "${TARGETS[@]}"; do
        cargo build --profile mobile -p outpost-ffi --lib --no-default-features --target "$target"
        libraries+=(-library "$TARGET_DIR/$target/mobile/liboutpost_ffi.a" -headers "$OUT/headers")
    done
    xcodebuild -create-xcframework "${libraries[@]}" -output "$OUT/Outpost.xcframework"
    echo "built $OUT/Outpost.xcframework and $OUT/swift/outpost_ffi.swift"
else
    echo "build-ios.sh: no Xcode (xcodebuild and the iOS SDK) here: built the Swift bindings," \
        "header and module map in $OUT; not built: liboutpost_ffi.a for ${TARGETS[*]}," \
        "Outpost.xcframework" >&2
    [ "$allow_missing" = 1 ] || exit 1
fi
