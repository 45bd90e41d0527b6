"""Outpost, an embedded RAG engine, for Python.

The engine is the Rust library `outpost-ffi` through its UniFFI bindings (`outpost._ffi`, built
into this wheel by maturin): everything in them is re-exported here, so `outpost.Engine`,
`outpost.EngineConfig`, `outpost.OutpostError` and the records are the ones that
`cross/README.md` documents. The LangChain adapter is `outpost.langchain` (it needs
`langchain-core`: `pip install outpost[langchain]`).
"""

from ._ffi import *  # noqa: F401,F403
