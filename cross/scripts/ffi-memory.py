"""Resident memory of the library in a host process, as a phone app would use it: each scenario
runs in a fresh Python process and reads its own VmRSS (and VmHWM, the peak) at each step.

- work: open a new database, ingest 50 texts, run 20 hybrid searches.
- search-only: open the database made by `work` in a new process; list it and search it by text
  index (no model needed), then run the first text query (which loads the model).

    cross/scripts/bindings.sh /tmp/b && PYTHONPATH=/tmp/b/python python3 cross/scripts/ffi-memory.py [--json]

Python itself is part of every figure: the interpreter, and the standard modules the generated
bindings import (asyncio, and through it ssl and libcrypto); the first two lines say how much.
With `--native BINARY` the same scenarios run in a native host instead, `cross/examples/memory.rs`
(the app's code calling the library's `Engine` in-process, as Kotlin and Swift do):

    cargo build --profile mobile -p outpost-ffi --no-default-features --example memory
    python3 cross/scripts/ffi-memory.py --native target/mobile/examples/memory
"""

import json
import os
import subprocess
import sys
import tempfile


def memory():
    """(VmRSS, VmHWM) of this process in MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out["VmRSS"], out["VmHWM"]


def scenario(name, db):
    steps = [("python alone", *memory())]
    # What the generated module imports, so that the next step is the library's own.
    import asyncio, contextlib, ctypes, datetime, enum, platform, struct, threading, traceback, typing  # noqa: E401,F401

    steps.append(("python with the bindings' imports", *memory()))
    import outpost_ffi as op  # noqa: E402 - measured after the interpreter itself

    steps.append(("library loaded", *memory()))
    if name == "work":
        engine = op.Engine.open(db, op.EngineConfig())
        steps.append(("engine open (model not loaded)", *memory()))
        for i in range(50):
            engine.ingest_text(f"Note {i} about glaciers, rivers and the tides of the northern sea.", None, None, None)
        steps.append(("after 50 ingests", *memory()))
        for _ in range(20):
            engine.search("how do tides work", 10, "hybrid", [])
        steps.append(("after 20 hybrid searches", *memory()))
    else:
        engine = op.Engine.open(db, op.EngineConfig())
        steps.append(("engine open (model not loaded)", *memory()))
        engine.stats()
        engine.search("tides", 10, "text", [])
        assert not engine.model_loaded(), "a text-index search loaded the model"
        steps.append(("after a text-index search", *memory()))
        engine.search("how do tides work", 10, "hybrid", [])
        assert engine.model_loaded()
        steps.append(("after the first text query (model loaded)", *memory()))
    return steps


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--scenario":
        print(json.dumps(scenario(sys.argv[2], sys.argv[3])))
        return
    results = {}
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "m.db")
        native = sys.argv[sys.argv.index("--native") + 1] if "--native" in sys.argv else None
        for name in ("work", "search-only"):
            out = subprocess.run(
                [native, name, db] if native else [sys.executable, __file__, "--scenario", name, db],
                check=True,
                capture_output=True,
                text=True,
            )
            results[name] = json.loads(out.stdout)
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
        return
    for name, steps in results.items():
        print(f"{name}:")
        for step, rss, hwm in steps:
            print(f"  {step:<45} {rss:6.1f} MiB resident (peak {hwm:.1f})")


if __name__ == "__main__":
    main()
