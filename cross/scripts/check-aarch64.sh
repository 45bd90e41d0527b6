#!/usr/bin/env bash
# Builds Outpost for aarch64-unknown-linux-gnu (Jetson Orin's CPU side) and runs it under qemu,
# so that the Jetson build cannot silently break on a machine that has only the x86_64 target.
#
# What it does, installing what is missing first:
#   1. Debian's gcc-aarch64-linux-gnu (linker and C compiler for the bundled SQLite, sqlite-vec,
#      oniguruma, ring), g++-aarch64-linux-gnu (usearch's HNSW index) and qemu-user (`qemu-aarch64 -L /usr/aarch64-linux-gnu` is the runner);
#   2. the nightly toolchain's standard-library source for `-Zbuild-std` (no aarch64 standard
#      library can be installed here): Debian's `rust-src` from the unstable suite, fetched with a
#      private apt configuration that reuses this machine's own Debian mirror, unpacked with its
#      links resolved into `$(rustc +nightly --print sysroot)/lib/rustlib/src/rust`;
#   3. builds the `outpost` binary and the FFI library (liboutpost_ffi.so) for aarch64;
#   4. runs the core tests that need no model under qemu (unit, migrations, queue, replica, and
#      the HNSW index's, which use usearch's portable code on aarch64);
#   5. indexes the example corpus with the native binary and searches it with the aarch64 one
#      (the same SQLite file on both architectures), full-text and hybrid;
#   6. checks that aarch64 embeddings agree with x86_64 ones (cosine >= 0.9999);
#   7. runs the encoder's kernel and parity tests under qemu (f32 and int8 against the
#      sentence-transformers reference), and checks that its products are gemm's NEON kernels.
# The model-using core tests are not run under qemu: embedding there is ~100x slower than native.
#
#   cross/scripts/check-aarch64.sh          # prints one line per stage and the total time
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TARGET=aarch64-unknown-linux-gnu
CACHE="${OUTPOST_AARCH64_CACHE:-$ROOT/.cache/aarch64}"
NATIVE_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The model, where scripts/test.sh puts it.
export OUTPOST_HOME="${OUTPOST_HOME:-$ROOT/.cache/outpost}"
export CARGO_TARGET_DIR="${OUTPOST_AARCH64_TARGET_DIR:-$ROOT/target/aarch64-cross}"
started=$(date +%s)
stage() { echo "check-aarch64: $* ($(($(date +%s) - started)) s)"; }
die() {
    echo "check-aarch64: $*" >&2
    exit 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Cross compiler and emulator.
missing=()
for pkg in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 is missing after installing qemu-user"

# 2. Nightly and the standard library's source.
rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
SYSROOT="$(rustc +nightly --print sysroot)"
SRC="$SYSROOT/lib/rustlib/src/rust"
if [ ! -f "$SRC/library/Cargo.lock" ]; then
    apt_dir="$CACHE/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    [ -n "$mirror" ] || mirror="$(awk '/^deb / { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt to fetch rust-src from"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" \
        >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o "Dir::Cache::Archives=$apt_dir/archives")
    apt-get "${apt_opts[@]}" update -qq >/dev/null
    (cd "$apt_dir" && apt-get "${apt_opts[@]}" download rust-src >/dev/null 2>&1)
    deb="$(ls "$apt_dir"/rust-src_*.deb | head -1)"
    rm -rf "$apt_dir/x"
    dpkg-deb -x "$deb" "$apt_dir/x"
    tree="$(cd "$apt_dir/x/usr/lib/rustlib/src" && readlink -f rust)"
    rm -rf "$SRC.tmp"
    mkdir -p "$(dirname "$SRC")"
    cp -rL "$tree" "$SRC.tmp"
    mv "$SRC.tmp" "$SRC"
    stage "installed the standard library's source from $(basename "$deb")"
fi

# 3. Build.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
xcargo() { cargo +nightly "$1" -Zbuild-std --target "$TARGET" --release "${@:2}"; }
xcargo build --quiet -p outpost -p outpost-ffi
BIN="$CARGO_TARGET_DIR/$TARGET/release/outpost"
file "$BIN" | grep -q "ARM aarch64" || die "$BIN is not an aarch64 executable"
[ -f "$CARGO_TARGET_DIR/$TARGET/release/liboutpost_ffi.so" ] || die "liboutpost_ffi.so was not built"
stage "built outpost and liboutpost_ffi.so for $TARGET"

# 4. The core tests that need no model, under qemu.
# The reachability test searches 3,600 chunks exhaustively 450 times (20 s natively, far longer
# emulated); it checks the graph usearch builds, not the target, and scripts/test.sh runs it.
xcargo test --quiet -p outpost-core --lib --test migrations --test queue --test replica --test ann \
    -- --skip every_vector_is_reachable 2>&1 |
    grep -E '^test result' | sed 's/^/  /'
stage "core tests passed under qemu"

# 5. A search over the example corpus: indexed natively, searched by the aarch64 binary.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The binary re-executes itself once to set its allocator's options unless they are set already;
# under qemu-user without binfmt that exec would hand the aarch64 file to /bin/sh.
export MIMALLOC_PURGE_DELAY=-1
# The native side in the dev profile (dependencies optimised): scripts/test.sh has built it
# already, so CI does not pay for a second, release build here.
CARGO_TARGET_DIR="$NATIVE_TARGET_DIR" cargo build --quiet -p outpost
native="$NATIVE_TARGET_DIR/debug/outpost"
"$native" models list --json | grep -q '"present": true' || "$native" models fetch >/dev/null
"$native" --db "$work/corpus.db" ingest examples/corpus >/dev/null
query="how do I keep a sourdough starter alive"
text_hit="$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$BIN" --db "$work/corpus.db" search "$query" --mode text -k 1 --json)"
hybrid_hit="$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$BIN" --db "$work/corpus.db" search "$query" -k 1 --json)"
native_hit="$("$native" --db "$work/corpus.db" search "$query" -k 1 --json)"
top() { python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; print(r[0]["document_id"] if r else "")'; }
[ -n "$(echo "$text_hit" | top)" ] || die "the aarch64 full-text search found nothing"
[ "$(echo "$hybrid_hit" | top)" = "$(echo "$native_hit" | top)" ] ||
    die "aarch64 and x86_64 disagree on the top hybrid hit"
stage "searched the example corpus under qemu: same top hit as x86_64"

# 6. Embedding parity.
texts=("Tides are caused by the moon." "A sourdough starter needs regular feeding." "Bees dance.")
"$native" embed "${texts[@]}" --json >"$work/x86.json"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$BIN" embed "${texts[@]}" --json >"$work/arm.json"
python3 - "$work/x86.json" "$work/arm.json" <<'EOF'
import json, math, sys
a, b = (json.load(open(p))["vectors"] for p in sys.argv[1:3])
worst = min(sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v)) for u, v in zip(a, b))
print(f"  lowest cosine between aarch64 and x86_64 embeddings: {worst:.6f}")
sys.exit(0 if worst >= 0.9999 else 1)
EOF
stage "aarch64 embeddings agree with x86_64"

# 7. The encoder's own tests on aarch64: its kernels (products, softmax, LayerNorm, GELU, the
# int8 layers' portable loop against f32), and the parity tests against sentence-transformers
# (f32 at cosine >= 0.9999, 147 s emulated; int8 at >= 0.99 through the portable loop, 110 s).
# The SciFact neighbour and packing tests are left to scripts/test.sh: emulated, they would take
# a quarter of an hour more, and what they check does not depend on the target.
xcargo test --quiet -p outpost-models --lib --test parity -- \
    --skip scifact_neighbours --skip a_text_embeds_the_same 2>&1 |
    grep -E '^test result' | sed 's/^/  /'
parity_bin="$(ls -t "$CARGO_TARGET_DIR/$TARGET/release/deps/"parity-* | grep -v '\.d$' | head -1)"
# The products are gemm's NEON micro-kernels there (its x86 ones are not built for aarch64).
# (grep -c reads all of nm's output: grep -q would stop early and, under pipefail, nm's SIGPIPE
# would fail the check even when the kernels are there.)
neon_kernels="$(aarch64-linux-gnu-nm -C "$parity_bin" | grep -c 'gemm_f32::microkernel::neon' || true)"
[ "${neon_kernels:-0}" -gt 0 ] || die "the aarch64 parity binary has no NEON matrix kernels"
stage "encoder kernels and parity tests passed under qemu (NEON kernels)"
echo "check-aarch64: passed in $(($(date +%s) - started)) s"
