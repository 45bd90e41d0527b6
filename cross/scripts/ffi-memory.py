"""Resident memory of the library from a host: a Python process before and after opening an
Engine (which loads the model), and after indexing and searching a few texts.

    cross/scripts/bindings.sh /tmp/b && PYTHONPATH=/tmp/b/python python3 cross/scripts/ffi-memory.py
"""

import os
import tempfile


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


before = rss_mib()
import outpost_ffi as op  # noqa: E402 - measured after the interpreter itself

imported = rss_mib()
with tempfile.TemporaryDirectory() as d:
    engine = op.Engine.open(os.path.join(d, "m.db"), op.EngineConfig())
    opened = rss_mib()
    for i in range(50):
        engine.ingest_text(f"Note {i} about glaciers, rivers and the tides of the northern sea.", None, None, None)
    for _ in range(20):
        engine.search("how do tides work", 10, "hybrid", [])
    used = rss_mib()
print(f"python alone {before:.0f} MiB; library loaded {imported:.0f} MiB; engine open (model loaded) {opened:.0f} MiB; after 50 ingests and 20 searches {used:.0f} MiB")
print(f"engine with the model: +{opened - imported:.0f} MiB; working: +{used - imported:.0f} MiB over the loaded library")
