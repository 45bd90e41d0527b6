#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo-fuzz on nightly) and runs each for FUZZ_SECONDS from its
# committed seeds (fuzz/seeds/<target>/) plus the scratch corpus the earlier runs grew
# (.cache/fuzz/corpus/<target>/). Prints one line per target (executions, seconds, execs/s,
# corpus size, peak memory) and writes them to .cache/fuzz/summary.json; exits 1, naming the
# saved input (.cache/fuzz/artifacts/<target>/crash-…, timeout-…, oom-…), if any target crashed,
# hung or ran out of memory. Reproduce one with
#   .cache/fuzz/target/x86_64-unknown-linux-gnu/release/<target> <that file>
#
# Usage: scripts/fuzz.sh [--build-only] [TARGET ...]     (default: every target)
#   FUZZ_SECONDS    seconds per target (default 20: a smoke run; 600 for a long run)
#   FUZZ_SANITIZER  address (default) or none (a quicker build, no memory checks)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 30)
#   FUZZ_RSS_MB     memory limit of a run in MB (default 4096)
# Installs what it needs, once, quietly: the nightly toolchain (rustup) and cargo-fuzz, pinned,
# under .cache/cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-30}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-4096}
CACHE=$PWD/.cache/fuzz
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

build_only=0
targets=()
for arg in "$@"; do
    case $arg in
        --build-only) build_only=1 ;;
        -*) echo "fuzz.sh: unknown option $arg" >&2; exit 2 ;;
        *) targets+=("$arg") ;;
    esac
done

# The nightly toolchain and cargo-fuzz, once.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal >/dev/null
fi
CARGO_FUZZ=$PWD/.cache/cargo-fuzz/bin/cargo-fuzz
export PATH=$PWD/.cache/cargo-fuzz/bin:$PATH
if ! "$CARGO_FUZZ" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION$"; then
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
        --root "$PWD/.cache/cargo-fuzz"
fi

if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^outpost-fuzz$')
fi

# The agent's target needs the whole `outpost` crate (feature `http`, on by default); without
# it in the list, the build leaves that crate out.
features=()
case " ${targets[*]} " in
    *" http_body "*) ;;
    *) features=(--no-default-features) ;;
esac

# One build of every target (a target dir of its own: nightly and the sanitizer's flags share
# nothing with the stable build, and the workspace's target dir would lock against it).
mkdir -p "$CACHE"
built=$(date +%s)
# (cargo fuzz builds one target or all of them.)
only=()
[ ${#targets[@]} -eq 1 ] && only=("${targets[0]}")
if ! cargo +nightly fuzz build "${features[@]}" --sanitizer "$FUZZ_SANITIZER" --target-dir "$CACHE/target" \
        "${only[@]}" >"$CACHE/build.log" 2>&1; then
    tail -n 40 "$CACHE/build.log" >&2
    echo "fuzz.sh: build failed (whole log: $CACHE/build.log)" >&2
    exit 1
fi
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - built)) s (sanitizer $FUZZ_SANITIZER)"
[ "$build_only" = 1 ] && exit 0

# SQLite's amalgamation has two file-static arrays named `aiOff`, which ASan's one-definition
# check reports as a violation although neither is visible outside the file.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
mkdir -p "$CACHE/logs" "$CACHE/summary"
failed=()
for t in "${targets[@]}"; do
    bin=$CACHE/target/$TRIPLE/release/$t
    corpus=$CACHE/corpus/$t
    artifacts=$CACHE/artifacts/$t
    log=$CACHE/logs/$t.log
    # The targets' scratch databases: removed after each run, also when a crash left them.
    scratch=$CACHE/tmp/$t
    rm -rf "$scratch"
    mkdir -p "$corpus" "$artifacts" "$scratch"
    started=$(date +%s)
    status=0
    TMPDIR=$scratch "$bin" "$corpus" "fuzz/seeds/$t" \
        -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    seconds=$(($(date +%s) - started))
    rm -rf "$scratch"
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    execs=$(stat number_of_executed_units)
    rate=$(stat average_exec_per_sec)
    rss=$(stat peak_rss_mb)
    # libFuzzer's own corpus at the end (units/size), and the files its folder holds.
    corp=$(grep -o 'DONE .* corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1 | sed 's/.*corp: //' || true)
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sk --apparent-size "$corpus" | cut -f1)
    if [ "$status" = 0 ]; then
        result=ok
    else
        found=$(grep -o "Test unit written to .*" "$log" | tail -n 1 | sed "s/Test unit written to //" || true)
        result="FAILED (exit $status${found:+, input $found})"
        failed+=("$t")
    fi
    printf 'fuzz: %-13s %10s execs in %4s s (%s/s), corpus %s units (folder: %s files, %s KB), peak RSS %s MB: %s\n' \
        "$t" "${execs:-?}" "$seconds" "${rate:-?}" "${corp:-?}" "$files" "$bytes" "${rss:-?}" "$result"
    printf '{"target":"%s","executions":%s,"seconds":%s,"execs_per_sec":%s,"corpus":"%s","corpus_files":%s,"corpus_kb":%s,"peak_rss_mb":%s,"ok":%s}\n' \
        "$t" "${execs:-null}" "$seconds" "${rate:-null}" "${corp:-}" "$files" "$bytes" "${rss:-null}" \
        "$([ "$status" = 0 ] && echo true || echo false)" >"$CACHE/summary/$t.json"
    if [ "$status" != 0 ]; then
        grep -v '^#\|^INFO\|^stat::' "$log" | tail -n 40 >&2
        echo "fuzz.sh: $t failed; whole log: $log" >&2
    fi
done
cat "$CACHE"/summary/*.json | sed '1s/^/[/; $!s/$/,/; $s/$/]/' >"$CACHE/summary.json"

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
