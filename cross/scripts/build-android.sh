#!/usr/bin/env bash
# Builds the Android library: target/android/outpost-ffi-<version>.aar and its .pom.
#
#   cross/scripts/build-android.sh [--bindings DIR] [--allow-missing-abis]
#
# The AAR holds what an app's Gradle build needs from Outpost:
#   jni/{arm64-v8a,armeabi-v7a,x86_64}/liboutpost_ffi.so   the library per ABI (the `mobile`
#       profile, `--no-default-features`: no PDF/HTML parsing, no direct Postgres; sync through
#       the Supabase REST API), built with cargo-ndk;
#   classes.jar             the UniFFI Kotlin bindings, compiled (Kotlin 2.4, JVM 17 bytecode);
#   AndroidManifest.xml     namespace dev.outpost.ffi, minSdk 26, the INTERNET permission;
#   proguard.txt            keep rules R8 needs for JNA and the bindings;
#   R.txt, META-INF/com/android/build/gradle/aar-metadata.properties.
# The .pom names its dependencies (JNA's AAR, kotlinx-coroutines), as a Maven repository would.
#
# Needs, for the native libraries: the Android NDK (ANDROID_NDK_HOME), `cargo install
# cargo-ndk`, `rustup target add aarch64-linux-android armv7-linux-androideabi
# x86_64-linux-android`. Everything else (bindings, classes.jar, the archive) needs only what
# scripts/test.sh installs (Java 17, Maven). Without the NDK the script builds the rest, says
# what is missing and fails, unless --allow-missing-abis (then the AAR has no jni/ and is not
# for an app: scripts/test.sh checks the packaging that way, on machines without the NDK).
# --bindings DIR reuses bindings made by cross/scripts/bindings.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$TARGET_DIR/android"
ABIS=(arm64-v8a armeabi-v7a x86_64)
bindings="" allow_missing=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bindings) bindings="$2"; shift 2 ;;
        --allow-missing-abis) allow_missing=1; shift ;;
        *) echo "build-android.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$ROOT"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
stage="$OUT/aar"
rm -rf "$stage" && mkdir -p "$stage/jni" "$stage/META-INF/com/android/build/gradle"

# 1. The native libraries, where the NDK is.
missing=()
if [ -n "${ANDROID_NDK_HOME:-}" ] && [ -d "$ANDROID_NDK_HOME" ] && cargo ndk --version >/dev/null 2>&1; then
    ndk_targets=()
    for abi in "${ABIS[@]}"; do ndk_targets+=(-t "$abi"); done
    cargo ndk "${ndk_targets[@]}" --platform 26 -o "$stage/jni" \
        build --profile mobile -p outpost-ffi --lib --no-default-features
else
    missing=("${ABIS[@]}")
    echo "build-android.sh: no Android NDK (ANDROID_NDK_HOME) with cargo-ndk here:" \
        "not built: jni/{$(IFS=,; echo "${ABIS[*]}")}/liboutpost_ffi.so" >&2
fi

# 2. The Kotlin bindings (the same for every target) compiled into classes.jar.
if [ -z "$bindings" ]; then
    bindings="$TARGET_DIR/bindings"
    OUTPOST_FFI_PROFILE="${OUTPOST_FFI_PROFILE:-debug}" cross/scripts/bindings.sh "$bindings" >/dev/null
fi
bindings="$(cd "$bindings" && pwd)"
[ -f "$bindings/kotlin/uniffi/outpost_ffi/outpost_ffi.kt" ] ||
    { echo "build-android.sh: no Kotlin bindings under $bindings" >&2; exit 1; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The suite's Maven project compiles the bindings as its main sources (into its
# target/classes): those, and only those, go in the jar.
classes="$ROOT/cross/kotlin/target/classes"
rm -rf "$classes"
if ! mvn -q -B -f cross/kotlin/pom.xml -Dmaven.repo.local="$ROOT/.cache/m2" \
    -Doutpost.bindings="$bindings" compile >"$log" 2>&1; then
    cat "$log"; echo "build-android.sh: compiling the Kotlin bindings FAILED" >&2; exit 1
fi
(cd "$classes" && jar --create --file "$stage/classes.jar" .)

# 3. The rest of the archive.
cat >"$stage/AndroidManifest.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="dev.outpost.ffi">
    <uses-sdk android:minSdkVersion="26" />
    <!-- Sync with a central Supabase store. -->
    <uses-permission android:name="android.permission.INTERNET" />
</manifest>
XML
cat >"$stage/proguard.txt" <<'PRO'
# JNA finds its classes and the bindings' structures by reflection (UniFFI's Kotlin docs).
-dontwarn java.awt.*
-keep class com.sun.jna.** { *; }
-keep class * extends com.sun.jna.** { *; }
-keep class uniffi.outpost_ffi.** { *; }
PRO
: >"$stage/R.txt"
printf 'aarFormatVersion=1.0\naarMetadataVersion=1.0\nminCompileSdk=26\n' \
    >"$stage/META-INF/com/android/build/gradle/aar-metadata.properties"
aar="$OUT/outpost-ffi-$version.aar"
rm -f "$aar"
(cd "$stage" && jar --create --file "$aar" --no-manifest .)
jna="$(sed -n 's:.*<jna.version>\(.*\)</jna.version>.*:\1:p' cross/kotlin/pom.xml)"
coroutines="$(sed -n 's:.*<coroutines.version>\(.*\)</coroutines.version>.*:\1:p' cross/kotlin/pom.xml)"
cat >"$OUT/outpost-ffi-$version.pom" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.outpost</groupId>
  <artifactId>outpost-ffi</artifactId>
  <version>$version</version>
  <packaging>aar</packaging>
  <dependencies>
    <dependency>
      <groupId>net.java.dev.jna</groupId>
      <artifactId>jna</artifactId>
      <version>$jna</version>
      <type>aar</type>
    </dependency>
    <dependency>
      <groupId>org.jetbrains.kotlinx</groupId>
      <artifactId>kotlinx-coroutines-android</artifactId>
      <version>$coroutines</version>
    </dependency>
  </dependencies>
</project>
POM

if [ ${#missing[@]} -gt 0 ]; then
    echo "build-android.sh: built $aar WITHOUT native libraries (missing: ${missing[*]}): not for an app" >&2
    [ "$allow_missing" = 1 ] || exit 1
else
    echo "built $aar"
fi
