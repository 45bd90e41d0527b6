"""The installed wheel: `outpost` imports from site-packages (not this source tree), opens a
database, indexes and searches through the engine; the README's LangChain program runs; and the
adapter's own promises beyond LangChain's suite hold (metadata of any shape, filters, relevance
scores, from_texts, the engine's own search over what LangChain stored).

    pytest cross/python/tests     # in a venv where the wheel is installed
"""

import os
import pathlib
import subprocess
import sys

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

import outpost
from outpost.langchain import OutpostEmbeddings, OutpostVectorStore

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture()
def engine(tmp_path):
    engine = outpost.Engine.open(str(tmp_path / "outpost.db"), outpost.EngineConfig())
    yield engine
    engine.shutdown()


def test_the_installed_package_is_the_wheel_and_searches(engine):
    assert "site-packages" in outpost.__file__, outpost.__file__
    engine.ingest_text("Tides are caused by the pull of the moon.", "Tides", "notes/tides", None)
    engine.ingest_text("Bees dance to show where the flowers are.", "Bees", "notes/bees", None)
    hits = engine.search("what causes tides", 2, "hybrid", [])
    assert hits[0].title == "Tides"
    with pytest.raises(outpost.OutpostError.InvalidInput):
        engine.search("tides", 1, "psychic", [])


def test_the_readme_langchain_program_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(HERE.parent / "examples/langchain_quickstart.py"), str(tmp_path / "lc.db")],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("tides  Tides are caused by the pull of the moon."), out.stdout
    assert "retrieved: bees" in lines
    assert "kept: ['tides']" in lines


def test_metadata_of_any_shape_comes_back_as_given(engine):
    store = OutpostVectorStore(engine, DeterministicFakeEmbedding(size=6))
    metadata = {"page": 3, "ratio": 0.5, "draft": False, "author": None,
                "tags": ["a", "b"], "origin": {"file": "x.pdf", "pages": [1, 2]}}
    [doc_id] = store.add_texts(["a page"], [metadata])
    assert store.get_by_ids([doc_id]) == [Document(id=doc_id, page_content="a page", metadata=metadata)]


def test_filters_and_relevance_scores(engine):
    store = OutpostVectorStore(engine)
    store.add_texts(
        ["The moon pulls the tides.", "Bees carry pollen.", "Wasps build paper nests."],
        [{"kind": "sea", "source": "sea.pdf"}, {"kind": "insect", "stings": False, "source": "bugs.pdf"},
         {"kind": "insect", "stings": True, "source": "bugs.pdf"}],
        ids=["tides", "bees", "wasps"],
    )
    # `source` in a dict is the metadata key (as LangChain's loaders set it), not Outpost's own.
    assert [d.id for d in store.similarity_search("insects", k=3, filter={"source": "sea.pdf"})] == ["tides"]
    assert [d.id for d in store.similarity_search("insects", k=3, filter={"kind": "insect"})] in (
        ["bees", "wasps"], ["wasps", "bees"])
    assert [d.id for d in store.similarity_search("insects", k=3, filter={"stings": True})] == ["wasps"]
    assert [d.id for d in store.similarity_search("insects", k=3, filter=["kind=sea"])] == ["tides"]
    [(best, relevance)] = store.similarity_search_with_relevance_scores("what pulls the tides", k=1)
    assert best.id == "tides" and 0.5 < relevance <= 1.0


def test_the_engines_model_as_langchain_embeddings(engine):
    embeddings = OutpostEmbeddings(engine)
    [a, b] = embeddings.embed_documents(["the tide rises", "the tide comes in"])
    assert len(a) == engine.model().dims == 384
    cosine = sum(x * y for x, y in zip(a, b))
    assert cosine > 0.5
    assert embeddings.embed_query("the tide rises") == pytest.approx(a, abs=1e-6)
    # Given explicitly, they are still the engine's own model: its collections, its searches.
    assert OutpostVectorStore(engine, embeddings).model_id is None
    assert OutpostVectorStore(engine, DeterministicFakeEmbedding(size=6)).model_id == (
        "langchain:langchain_core.embeddings.fake.DeterministicFakeEmbedding")


def test_what_langchain_stores_with_the_engines_model_the_engine_also_searches(engine):
    store = OutpostVectorStore(engine, collection="default")
    store.add_texts(["Volcanoes erupt when magma rises."], ids=["volcano"])
    hits = engine.search("magma", 1, "text", [])
    assert hits[0].source == "volcano"


def test_from_texts_opens_a_database_and_another_model_keeps_its_own_collection(tmp_path):
    store = OutpostVectorStore.from_texts(
        ["foo", "bar"], DeterministicFakeEmbedding(size=6), ids=["1", "2"], path=str(tmp_path / "f.db"))
    assert [d.id for d in store.similarity_search("bar", k=2)] == ["2", "1"]
    # The same collection cannot take the vectors of another model.
    other = OutpostVectorStore(store.engine)
    with pytest.raises(outpost.OutpostError.InvalidInput):
        other.add_texts(["baz"])
    store.engine.shutdown()
