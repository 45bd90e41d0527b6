"""LangChain's own standard suite for vector stores (langchain-tests' VectorStoreIntegrationTests),
unmodified, run against OutpostVectorStore twice: with the embeddings the suite hands out
(`get_embeddings()`: DeterministicFakeEmbedding, 6 dimensions) and with the engine's own model
(OutpostEmbeddings, 384). Each test gets an empty database of its own.

Runs against the installed wheel (`pip install outpost-*.whl langchain-tests`), with the model
under OUTPOST_HOME:

    pytest cross/python/tests
"""

import pytest
from langchain_tests.integration_tests import VectorStoreIntegrationTests

import outpost
from outpost.langchain import OutpostEmbeddings, OutpostVectorStore


@pytest.fixture()
def engine(tmp_path):
    engine = outpost.Engine.open(str(tmp_path / "langchain.db"), outpost.EngineConfig())
    yield engine
    engine.shutdown()


class TestWithTheSuitesEmbeddings(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, engine):
        return OutpostVectorStore(engine, self.get_embeddings())


class TestWithTheEnginesModel(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, engine):
        store = OutpostVectorStore(engine)
        assert isinstance(store.embeddings, OutpostEmbeddings)
        return store
