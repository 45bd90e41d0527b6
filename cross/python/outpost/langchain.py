"""LangChain over Outpost: `OutpostVectorStore` (a LangChain `VectorStore`) and
`OutpostEmbeddings` (the engine's own model as a LangChain `Embeddings`).

Every call goes to the engine through its FFI (`outpost.Engine`). A LangChain document is one
Outpost document, stored unsplit (LangChain splits before it stores) with the vector the store's
`Embeddings` made, in one collection (`langchain` unless named):

- its LangChain id is the document's source in that collection, so adding an id again replaces
  that document (keeping its Outpost id), `delete` and `get_by_ids` take those ids, and a
  document without one gets a new UUID. Ids are this device's: synced from another device, a
  document comes back in searches with the id it was given there, but `get_by_ids` and `delete`
  reach the documents stored here (the same id on two devices is two documents);
- its metadata comes back as given: string, number, boolean and null values are stored as they
  are (and can be filtered on), lists and objects as JSON text, decoded on the way out;
- its vector is the `Embeddings`' own, of whatever size. With the default, `OutpostEmbeddings`,
  that is the engine's model (MiniLM, offline, on the device), and the collection is one the
  engine's own ingestion and search also serve. With any other `Embeddings` the collection holds
  that model's vectors, kept apart under a model id (`model_id=`, by default the `Embeddings`'
  class and model name): a collection holds the vectors of one model, and only vectors of one
  model are compared.

Scores are cosine similarities (higher is better); relevance scores map them to 0..1. The async
methods are LangChain's defaults, which run these calls on an executor thread: the engine is
thread-safe and releases the GIL while it works.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from . import Engine, EngineConfig, VectorText

DEFAULT_COLLECTION = "langchain"

# The metadata key that lists which keys held a list or an object, stored as JSON text.
_JSON_KEYS = "_langchain_json"


class OutpostEmbeddings(Embeddings):
    """The engine's embedding model (the one it loaded: by default all-MiniLM-L6-v2, 384
    dimensions) as a LangChain `Embeddings`: offline, in this process."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @property
    def model_id(self) -> str:
        """The model's id, as Outpost names it."""
        return self.engine.model().model_id

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return [list(v) for v in self.engine.embed(list(texts))]

    def embed_query(self, text: str) -> List[float]:
        return self.embed_documents([text])[0]


def _model_id(embedding: Embeddings) -> str:
    """A name for the vectors of a foreign `Embeddings`: its class, and its model if it says."""
    kind = type(embedding)
    name = f"langchain:{kind.__module__}.{kind.__qualname__}"
    for attr in ("model", "model_name"):
        model = getattr(embedding, attr, None)
        if isinstance(model, str) and model:
            return f"{name}:{model}"
    return name


def _encode_metadata(metadata: Optional[dict]) -> str:
    flat, nested = {}, []
    for key, value in (metadata or {}).items():
        if isinstance(value, (dict, list, tuple)):
            flat[key] = json.dumps(value)
            nested.append(key)
        else:
            flat[key] = value
    if nested:
        flat[_JSON_KEYS] = json.dumps(nested)
    return json.dumps(flat)


def _decode_metadata(raw: str) -> dict:
    metadata = json.loads(raw) if raw else {}
    for key in json.loads(metadata.pop(_JSON_KEYS, "[]")):
        if isinstance(metadata.get(key), str):
            metadata[key] = json.loads(metadata[key])
    return metadata


class OutpostVectorStore(VectorStore):
    """A LangChain `VectorStore` kept in an Outpost database.

        engine = outpost.Engine.open("notes.db", outpost.EngineConfig())
        store = OutpostVectorStore(engine)                  # the engine's own model
        store = OutpostVectorStore(engine, my_embeddings)   # or any LangChain Embeddings

    `filter` in the searches is a dict of metadata values that must all be equal (any key,
    `source` too), or a list of Outpost filters (`topic=bees`, `year>=2023`; there `source=PREFIX`
    is a prefix of the LangChain id and `meta.source=...` the metadata key).
    """

    def __init__(
        self,
        engine: Engine,
        embedding: Optional[Embeddings] = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        model_id: Optional[str] = None,
    ):
        self.engine = engine
        self.collection = collection
        self._embedding = embedding if embedding is not None else OutpostEmbeddings(engine)
        if model_id is None and isinstance(self._embedding, OutpostEmbeddings):
            # An Outpost model, this engine's or another's: named as Outpost names it.
            model_id = self._embedding.model_id
        if model_id is None:
            model_id = _model_id(self._embedding)
        # None: the engine's own model.
        self.model_id = None if model_id == engine.model().model_id else model_id
        self._collection_exists = False

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @classmethod
    def from_texts(
        cls,
        texts: List[str],
        embedding: Optional[Embeddings] = None,
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        engine: Optional[Engine] = None,
        path: Optional[str] = None,
        collection: str = DEFAULT_COLLECTION,
        model_id: Optional[str] = None,
        **kwargs: Any,
    ) -> "OutpostVectorStore":
        """A store over `engine`, or over the database at `path` (opened with the default
        model), holding `texts`."""
        if engine is None:
            if path is None:
                raise ValueError("OutpostVectorStore.from_texts needs an engine or a path")
            engine = Engine.open(path, EngineConfig())
        store = cls(engine, embedding, collection=collection, model_id=model_id)
        store.add_texts(texts, metadatas, ids=ids, **kwargs)
        return store

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[Optional[str]]] = None,
        **kwargs: Any,
    ) -> List[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        ids = [i if i else str(uuid.uuid4()) for i in (ids or [None] * len(texts))]
        if not texts:
            return []
        vectors = self._embedding.embed_documents(texts)
        for i, (text, vector) in enumerate(zip(texts, vectors)):
            self.engine.put_text_with_vector(
                VectorText(
                    text=text,
                    vector=[float(x) for x in vector],
                    source=ids[i],
                    metadata_json=_encode_metadata(metadatas[i] if metadatas else None),
                    collection=self.collection,
                    model_id=self.model_id,
                )
            )
        self._collection_exists = True
        return ids

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        """Deletes the documents with these ids (a tombstone that sync carries to other
        devices); ids that are not stored are passed over."""
        if ids is None:
            raise ValueError("OutpostVectorStore.delete needs the ids to delete")
        for doc in self.engine.documents_by_source(self.collection, list(ids)):
            self.engine.delete_document(doc.document_id)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """The stored documents with these ids, in that order, whole; unknown ids are left
        out."""
        return [
            Document(id=doc.source, page_content=doc.text, metadata=_decode_metadata(doc.metadata_json))
            for doc in self.engine.documents_by_source(self.collection, list(ids))
        ]

    def similarity_search(self, query: str, k: int = 4, filter: Union[dict, list, None] = None, **kwargs: Any) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Union[dict, list, None] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        vector = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter, **kwargs)

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Union[dict, list, None] = None, **kwargs: Any
    ) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter: Union[dict, list, None] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The `k` documents whose vectors are closest to `embedding`, with their cosine
        similarity. A document that Outpost split itself (one indexed with `ingest_text` into
        this collection) comes back once per matching chunk, with that chunk's text."""
        if k <= 0 or not self._exists():
            return []
        filters = [f"collection={self.collection}"] + _filters(filter)
        hits = self.engine.search_vector_of(self.model_id, [float(x) for x in embedding], k, filters)
        if not hits:
            return []
        stored = {
            doc.document_id: doc
            for doc in self.engine.documents(list({h.document_id: None for h in hits}))
        }
        found = []
        for hit in hits:
            doc = stored.get(hit.document_id)
            if doc is None:  # deleted between the search and this read
                continue
            metadata = _decode_metadata(doc.metadata_json)
            found.append((Document(id=hit.source, page_content=hit.text, metadata=metadata), hit.score))
        return found

    def _select_relevance_score_fn(self):
        # Cosine similarity, -1..1, to 0..1.
        return lambda score: (score + 1.0) / 2.0

    def _exists(self) -> bool:
        """Whether this store's collection exists yet (it is made by the first add)."""
        if not self._collection_exists:
            self._collection_exists = self.collection in self.engine.stats().collections
        return self._collection_exists


def _filters(filter: Union[dict, list, None]) -> List[str]:
    if filter is None:
        return []
    if isinstance(filter, dict):
        out = []
        for key, value in filter.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif not isinstance(value, (str, int, float)):
                raise ValueError(f"filter {key!r}: a string, number or boolean to equal, not {value!r}")
            # `meta.` names the metadata key even where it is also a built-in (`source`).
            out.append(f"meta.{key}={value}")
        return out
    return list(filter)
