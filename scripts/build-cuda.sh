#!/usr/bin/env bash
# Builds `outpost` and the parity test with `--features cuda` on a machine without the CUDA
# toolkit or a GPU, for a GPU machine elsewhere: the CUDA 13.0 compiler, headers and libraries
# come from NVIDIA's PyPI wheels, and the driver library is a link-time stub generated from
# cudarc's own symbol list (the real libcuda.so.1 of the GPU machine's driver is used at run
# time). Where the CUDA toolkit is installed, plain `cargo build --release -p outpost --features
# cuda` does the same.
#
# Env: CUDA_COMPUTE_CAP (90: Hopper; 89: Ada; 87: Jetson Orin; 86/80: Ampere), CUDA_WHEELS
# (target/cuda-toolkit), CARGO_TARGET_DIR (target/cuda).
# Output: target/cuda/release/outpost and the path of the parity test binary.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
root="${CUDA_WHEELS:-$PWD/target/cuda-toolkit}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"
cuda="$root/nvidia/cu13"

if [ ! -x "$cuda/bin/nvcc" ]; then
    mkdir -p "$root/wheels"
    python3 -m pip download --quiet --no-deps -d "$root/wheels" \
        "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-crt==13.0.88" \
        "nvidia-cuda-cccl==13.0.85" "nvidia-nvvm==13.0.88" "nvidia-cuda-nvrtc==13.0.88" \
        "nvidia-cublas==13.1.0.3" "nvidia-curand==10.4.0.35"
    for w in "$root"/wheels/*.whl; do (cd "$root" && unzip -q -o "$w"); done
    (cd "$cuda/lib" && for l in cudart cublas cublasLt nvrtc curand; do
        ln -sf "$(ls "lib$l.so."* | head -1)" "lib$l.so"; done)
    ln -sfn lib "$cuda/lib64"
fi
if [ ! -e "$cuda/lib/stubs/libcuda.so" ]; then
    cargo fetch --quiet
    sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys | tail -1)"
    mkdir -p "$cuda/lib/stubs"
    grep -oE 'load::<_F>\("[A-Za-z0-9_]+"\)' "$sys/mod.rs" | sed -E 's/.*\("(.*)"\)/\1/' | sort -u |
        awk '{print "void " $1 "(void) {}"}' >"$cuda/lib/stubs/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/cuda_stub.c"
fi

export PATH="$cuda/bin:$PATH" CUDA_HOME="$cuda" CUDA_PATH="$cuda" \
    LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
cargo build --release -p outpost --features cuda
cargo test --release -p outpost-models --features cuda --test parity --no-run 2>&1 |
    sed -n 's/.*Executable tests\/parity.rs (\(.*\))/\1/p'
