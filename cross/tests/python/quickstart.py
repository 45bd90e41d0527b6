"""A minimal Outpost program in Python: open a database, index a note and a folder (an async
call, with progress), search, build a context, and catch a documented error.

    PYTHONPATH=<bindings>/python python3 quickstart.py DATABASE FOLDER
"""

import asyncio
import sys

import outpost_ffi as op


class Progress:
    def on_progress(self, phase, done, total):
        print(f"{phase}: {done} of {total}")


async def main(database, folder):
    # The model is the fetched default under OUTPOST_HOME (or EngineConfig(model_dir=...)).
    engine = op.Engine.open(database, op.EngineConfig())
    engine.ingest_text("Tides are caused by the pull of the moon.", "Tides", "notes/tides", None)
    summary = await engine.ingest_path(folder, Progress())  # cancel the task to stop it
    print(f"{summary.added} files added, {summary.failed} failed")
    for hit in engine.search("what causes tides", 3, "hybrid", []):
        print(f"{hit.score:.3f}  {hit.title}")
    context = engine.context("why are there tides", 300, None)
    print(f"context: {context.tokens} tokens, {len(context.citations)} citation(s)")
    try:
        engine.search("tides", 3, "psychic", [])
    except op.OutpostError.InvalidInput as e:
        print(f"refused: {e.detail}")
    engine.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
