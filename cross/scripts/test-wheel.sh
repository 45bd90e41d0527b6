#!/usr/bin/env bash
# Builds the Python package `outpost` (cross/python: the library with its UniFFI bindings, and
# the LangChain adapter) as a wheel with maturin, installs the wheel into a fresh venv with the
# pinned test requirements (cross/python/requirements-test.txt), and runs its tests there, outside
# the source tree: the installed package imports and searches, the README's LangChain program
# runs, and LangChain's own standard suite for vector stores (langchain-tests) passes, with the
# suite's embeddings and with the engine's model. Quiet on success (the test counts), the whole
# log on failure; a skipped or expected-to-fail test is a failure.
#
#   cross/scripts/test-wheel.sh     # OUTPOST_WHEEL_PROFILE=release for an optimised build (default dev)
#
# Needs: the Rust toolchain, python3 with venv and pip (PyPI, or pip's cache), the model under
# OUTPOST_HOME (scripts/test.sh fetches it). maturin, pinned in cross/python/pyproject.toml, is
# installed once into .cache/maturin-VERSION.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export OUTPOST_HOME="${OUTPOST_HOME:-$ROOT/.cache/outpost}"
PROFILE="${OUTPOST_WHEEL_PROFILE:-dev}"
PACKAGE="$ROOT/cross/python"
MATURIN_VERSION="$(sed -n 's/^requires = \["maturin==\([0-9.]*\)"\]$/\1/p' "$PACKAGE/pyproject.toml")"
[ -n "$MATURIN_VERSION" ] || { echo "test-wheel.sh: no maturin pin in $PACKAGE/pyproject.toml" >&2; exit 1; }

work="$(mktemp -d /tmp/outpost-wheel.XXXXXX)"
trap 'rm -rf "$work"' EXIT
log="$work/log"
run() {
    if ! "$@" >"$log" 2>&1; then
        cat "$log"
        echo "test-wheel.sh: FAILED: $*" >&2
        exit 1
    fi
}
pip_install() {
    "$1" -m pip install --quiet --disable-pip-version-check "${@:2}"
}

# maturin in a venv of its own under .cache (the marker is written only after a whole install).
maturin_venv="$ROOT/.cache/maturin-$MATURIN_VERSION"
make_maturin_venv() {
    [ -e "$maturin_venv/.installed" ] && return 0
    rm -rf "$maturin_venv" && python3 -m venv "$maturin_venv" &&
        pip_install "$maturin_venv/bin/python" "maturin==$MATURIN_VERSION" &&
        touch "$maturin_venv/.installed"
}
run make_maturin_venv
cd "$PACKAGE"
# maturin generates the Python module into the target folder and packs whatever is there: a
# module left by an earlier build must not stand in for this one's.
rm -rf "${CARGO_TARGET_DIR:-$ROOT/target}/maturin/uniffi"
run "$maturin_venv/bin/maturin" build --profile "$PROFILE" --out "$work/wheels"
wheel="$(ls "$work"/wheels/outpost-*.whl)"

# A fresh venv with nothing but the wheel and the pinned test requirements; the tests run from
# the work folder, so `outpost` can only come from the installed wheel.
venv="$work/venv"
run python3 -m venv "$venv"
run pip_install "$venv/bin/python" -r "$PACKAGE/requirements-test.txt" "$wheel"
cd "$work"
run "$venv/bin/python" -c 'import outpost, outpost.langchain'
run "$venv/bin/pytest" -q -p no:cacheprovider --junitxml="$work/junit.xml" "$PACKAGE/tests"
"$venv/bin/python" - "$work/junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
bad = [c.get("name") for c in cases if c.find("skipped") is not None or c.find("failure") is not None]
if not cases or bad:
    sys.exit(f"test-wheel.sh: {len(cases)} tests ran; skipped or failed: {bad}")
standard = sum("test_langchain_standard" in c.get("classname") for c in cases)
print(f"python package tests (installed wheel): {len(cases)} passed, "
      f"{standard} of them LangChain's standard vector store suite")
PY
