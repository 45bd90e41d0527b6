#!/usr/bin/env bash
# Compiles the generated Kotlin bindings with the Kotlin suite (cross/kotlin, Maven) and runs it
# on the JVM against the real library, loaded by JNA as on Android. Maven and its downloads stay
# in .cache/m2. Quiet on success (the test count), the whole log on failure.
#
#   cross/scripts/test-kotlin.sh [BINDINGS]   # BINDINGS: made by bindings.sh; default: made here
#
# Needs: Java 17+ and Maven; OUTPOST_HOME with the model (scripts/test.sh fetches it) and
# OUTPOST_TEST_PG_URL, a test Postgres for the sync tests (scripts/test.sh starts one;
# or `scripts/pg.sh start DIR` and DIR/url).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export OUTPOST_HOME="${OUTPOST_HOME:-$ROOT/.cache/outpost}"
BINDINGS="${1:-}"
if [ -z "$BINDINGS" ]; then
    BINDINGS="$ROOT/target/bindings"
    OUTPOST_FFI_PROFILE="${OUTPOST_FFI_PROFILE:-debug}" "$ROOT/cross/scripts/bindings.sh" "$BINDINGS" >/dev/null
fi
BINDINGS="$(cd "$BINDINGS" && pwd)"  # Maven takes a relative path from cross/kotlin
# bindings.sh puts the library it generated from next to the Python module.
LIB="$BINDINGS/python/liboutpost_ffi.so"
[ -f "$BINDINGS/kotlin/uniffi/outpost_ffi/outpost_ffi.kt" ] && [ -f "$LIB" ] ||
    { echo "test-kotlin.sh: no Kotlin bindings and library under $BINDINGS" >&2; exit 1; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! mvn -q -B -f "$ROOT/cross/kotlin/pom.xml" -Dmaven.repo.local="$ROOT/.cache/m2" \
    -Doutpost.bindings="$BINDINGS" -Doutpost.lib="$LIB" test >"$log" 2>&1; then
    cat "$log"
    for report in "$ROOT"/cross/kotlin/target/surefire-reports/*.txt; do
        [ -e "$report" ] && cat "$report"
    done
    echo "test-kotlin.sh: the Kotlin suite FAILED" >&2
    exit 1
fi
# Surefire's reports: every test ran, none skipped.
python3 - "$ROOT/cross/kotlin/target/surefire-reports" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
tests = skipped = 0
for f in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    suite = ET.parse(f).getroot()
    tests += int(suite.get("tests")); skipped += int(suite.get("skipped"))
if tests == 0 or skipped:
    sys.exit(f"test-kotlin.sh: {tests} Kotlin tests ran, {skipped} skipped")
print(f"kotlin tests of the library: {tests} passed")
PY
