#!/usr/bin/env python3
"""What takes the space in a built library, by crate: the sizes of its symbols (`nm -S`) summed by
the crate their demangled path starts with; C and C++ symbols are credited to the crate whose
build script compiled them (the static archives under <target>/<profile>/build/*/out). Needs an
unstripped library (the mobile profile strips: build with CARGO_PROFILE_MOBILE_STRIP=false).
Read-only data that LTO leaves without a symbol (ICU4X's baked data, for one) is counted in no
crate: compare the section sizes (`size -A`) too.

    cross/scripts/size-by-crate.py LIBRARY BUILD_DIR [TOP]
    cross/scripts/size-by-crate.py target/mobile/liboutpost_ffi.so target/mobile/build 40
"""
import collections
import glob
import os
import re
import subprocess
import sys


def native_symbols(build_dir):
    owner = {}
    for archive in glob.glob(os.path.join(build_dir, "*", "out", "**", "*.a"), recursive=True):
        crate = re.sub(r"-[0-9a-f]{16}$", "", os.path.basename(archive.split("/out/")[0]))
        out = subprocess.run(["nm", "--defined-only", archive], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:
                owner.setdefault(parts[2], crate)
    return owner


def crate_of(name, demangled, native):
    if name in native:
        return native[name] + " (C)"
    s = demangled.lstrip("<")
    s = re.sub(r"^(impl |dyn |&mut |&|\*const |\*mut |\[)+", "", s)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    if m:
        return m.group(1)
    return "(rust, no path)" if name.startswith(("_ZN", "_R")) else "(other C)"


def main():
    library, build_dir = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    native = native_symbols(build_dir)
    raw = subprocess.run(["nm", "-S", "--size-sort", library], capture_output=True, text=True).stdout
    dem = subprocess.run(["nm", "-S", "--size-sort", "-C", library], capture_output=True, text=True).stdout
    by_crate = collections.Counter()
    largest = []
    for r, d in zip(raw.splitlines(), dem.splitlines()):
        rp, dp = r.split(None, 3), d.split(None, 3)
        if len(rp) < 4:
            continue
        size, kind, name = int(rp[1], 16), rp[2], rp[3]
        crate = crate_of(name, dp[3], native)
        by_crate[crate] += size
        largest.append((size, kind, crate, dp[3][:100]))
    total = sum(by_crate.values())
    print(f"{library}: {os.path.getsize(library):,} bytes, symbols {total:,} bytes")
    for crate, size in by_crate.most_common(top):
        print(f"{size:>11,} {100 * size / total:5.1f}%  {crate}")
    print("largest symbols:")
    for size, kind, crate, name in sorted(largest, reverse=True)[:15]:
        print(f"{size:>11,} {kind} {crate:<16} {name}")


if __name__ == "__main__":
    main()
