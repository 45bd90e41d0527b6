"""LangChain over Outpost: a vector store in one SQLite file, embedded on the device by the
engine's own model, used as LangChain uses any vector store.

    pip install outpost-*.whl langchain-core
    python3 langchain_quickstart.py DATABASE
"""

import sys

from langchain_core.documents import Document

import outpost
from outpost.langchain import OutpostVectorStore


def main(database):
    # The model is the fetched default under OUTPOST_HOME (or EngineConfig(model_dir=...)).
    engine = outpost.Engine.open(database, outpost.EngineConfig())
    # The engine's own model; OutpostVectorStore(engine, embeddings) takes any LangChain Embeddings.
    store = OutpostVectorStore(engine)
    store.add_documents(
        [
            Document(page_content="Tides are caused by the pull of the moon.", metadata={"topic": "ocean"}),
            Document(page_content="Bees dance to show where the flowers are.", metadata={"topic": "bees"}),
        ],
        ids=["tides", "bees"],
    )
    for doc, score in store.similarity_search_with_score("what moves the sea", k=2):
        print(f"{score:.3f}  {doc.id}  {doc.page_content}")
    retriever = store.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "bees"}})
    print("retrieved:", retriever.invoke("which way to the flowers")[0].id)
    store.delete(["bees"])
    print("kept:", [doc.id for doc in store.get_by_ids(["tides", "bees"])])
    engine.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
