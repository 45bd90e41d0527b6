"""The agent's OpenAI-compatible API through the official `openai` Python SDK, as a user's app
would call it: models, chat completions (plain and streamed, with the `sources` extra field),
embeddings (the SDK's default base64, float and explicit base64), and the SDK's exceptions for
the agent's errors. The contract is the generation API of `outpost serve` (/v1/models,
/v1/chat/completions, /v1/embeddings).

The agent must be running on the quickstart corpus (`outpost --db DB ingest examples/corpus`)
with a token; edge-agent/tests/openai_sdk.rs starts it and runs this suite with the SDK pinned
by requirements.txt beside this file (scripts/test.sh installs it into .cache/openai-VERSION):

    OUTPOST_AGENT_URL=http://127.0.0.1:PORT OUTPOST_AGENT_TOKEN=secret \
        .cache/openai-VERSION/bin/python -m unittest -v test_openai_sdk

OUTPOST_CORPUS names the ingested corpus folder (default: the repository's examples/corpus).
Answers are kept short (the model is small and runs on a CPU) and greedy unless a test says.
"""

import base64
import functools
import math
import os
import pathlib
import struct
import time
import unittest

import openai

ROOT = pathlib.Path(__file__).resolve().parents[3]
URL = os.environ.get("OUTPOST_AGENT_URL", "").rstrip("/")
TOKEN = os.environ.get("OUTPOST_AGENT_TOKEN", "")
CORPUS = pathlib.Path(os.environ.get("OUTPOST_CORPUS") or ROOT / "examples" / "corpus").resolve()

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
# Answered by examples/corpus/bees/varroa-mite-control.md ("Measure before you treat").
QUESTION = "How do I count the varroa mites in my honey bee colony?"
ANSWERED_BY = "bees/varroa-mite-control.md"
MAX_TOKENS = 48
# Generation on two CPU cores (a debug build under `cargo test`): generous, but a hung request
# still fails its test in time for the others to run.
TIMEOUT_S = 180.0


def client(api_key=None):
    """The SDK's client for the agent, as the contract documents it (no retries: an error
    must reach the test as the agent sent it)."""
    return openai.OpenAI(
        base_url=URL + "/v1",
        api_key=api_key if api_key is not None else TOKEN,
        max_retries=0,
        timeout=TIMEOUT_S,
    )


def setUpModule():
    # Fail, never skip: a suite that silently tests nothing would pass CI.
    if not URL or not TOKEN:
        raise RuntimeError(
            "set OUTPOST_AGENT_URL and OUTPOST_AGENT_TOKEN to a running agent with the "
            "quickstart corpus (edge-agent/tests/openai_sdk.rs does)"
        )
    if not CORPUS.is_dir():
        raise RuntimeError(f"the corpus folder {CORPUS} does not exist (set OUTPOST_CORPUS)")


@functools.lru_cache(maxsize=None)
def model_ids():
    return tuple(m.id for m in client().models.list())


@functools.lru_cache(maxsize=None)
def llm_id():
    """The language model's id: the listed model that is not the embedding model."""
    others = [m for m in model_ids() if m != EMBEDDING_MODEL]
    if not others:
        raise AssertionError(f"/v1/models lists no language model: {model_ids()}")
    return others[0]


def chat(messages, **kw):
    if "max_completion_tokens" not in kw:
        kw.setdefault("max_tokens", MAX_TOKENS)
    return client().chat.completions.create(model=llm_id(), messages=messages, **kw)


def ask(question=QUESTION, **kw):
    return chat([{"role": "user", "content": question}], **kw)


def settled(*args, **kw):
    """ask(), after the same request once: the agent reuses the model's cached keys and values
    of the longest prefix it shares with the previous prompt, and the logits (so a greedy
    answer at a near tie) may differ with how much was cached. Two answers compared for
    equality are both taken right after the same prompt, so both start from the same cache."""
    ask(*args, **kw)
    return ask(*args, **kw)


@functools.lru_cache(maxsize=None)
def answer():
    """The plain (non-streamed) answer to QUESTION, shared by the tests that read it."""
    return ask()


def sources_of(obj):
    """The `sources` extra field of a completion or chunk: reachable as the SDK exposes extra
    fields, as `model_extra` and as an attribute, the same list both ways."""
    extra = obj.model_extra or {}
    if "sources" not in extra:
        raise AssertionError(f"no `sources` field in {obj.model_dump_json()[:2000]}")
    assert getattr(obj, "sources") is extra["sources"]
    return extra["sources"]


def corpus_file(source):
    """The corpus file a source names (an absolute path, or one relative to the corpus folder,
    with `#record` after a JSONL file), or None if it names none."""
    path = pathlib.Path(str(source).split("#", 1)[0])
    if not path.is_absolute():
        path = CORPUS / path
    try:
        path = path.resolve()
        path.relative_to(CORPUS)
    except (OSError, ValueError):
        return None
    return path if path.is_file() else None


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


class Checks(unittest.TestCase):
    maxDiff = 4000

    def assert_usage(self, usage, max_completion=MAX_TOKENS):
        self.assertIsNotNone(usage, "no usage")
        self.assertGreater(usage.prompt_tokens, 0)
        self.assertGreater(usage.completion_tokens, 0)
        self.assertLessEqual(usage.completion_tokens, max_completion)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)

    def assert_sources(self, sources, cited_known=True):
        """Sources of a retrieval answer: numbered from 1, each a passage of a corpus file, one
        of them the file that answers QUESTION."""
        self.assertIsInstance(sources, list)
        self.assertTrue(sources, "no sources for a question the corpus answers")
        self.assertEqual([s["n"] for s in sources], list(range(1, len(sources) + 1)))
        for s in sources:
            for field in ("document_id", "title", "source", "text"):
                self.assertIsInstance(s.get(field), str, f"{field} of {s}")
            self.assertTrue(s["text"].strip(), s)
            self.assertIsNotNone(corpus_file(s["source"]), f"{s['source']} is not in {CORPUS}")
            self.assertIsInstance(s.get("chunk_ids"), list, s)
            self.assertTrue(s["chunk_ids"], s)
            self.assertIsInstance(s.get("byte_start"), int, s)
            self.assertIsInstance(s.get("byte_end"), int, s)
            self.assertLess(s["byte_start"], s["byte_end"], s)
            self.assertIsInstance(s.get("cited"), bool, s)
            if not cited_known:
                self.assertFalse(s["cited"], f"cited before the answer is written: {s}")
        files = [corpus_file(s["source"]) for s in sources]
        self.assertIn(CORPUS / ANSWERED_BY, files, [s["source"] for s in sources])


class Models(Checks):
    def test_lists_the_language_model_and_the_embedding_model(self):
        models = list(client().models.list())
        ids = [m.id for m in models]
        self.assertIn(EMBEDDING_MODEL, ids)
        self.assertTrue([i for i in ids if i != EMBEDDING_MODEL], f"no language model in {ids}")
        self.assertEqual(len(ids), len(set(ids)), ids)
        for m in models:
            self.assertEqual(m.object, "model")
            self.assertIsInstance(m.created, int)
            self.assertEqual(m.owned_by, "outpost")


class Chat(Checks):
    def test_answers_from_the_corpus_with_sources(self):
        started = time.time()
        c = answer()
        self.assertTrue(c.id.startswith("chatcmpl-"), c.id)
        self.assertEqual(c.object, "chat.completion")
        self.assertLessEqual(abs(c.created - started), 600)
        self.assertEqual(c.model, llm_id())
        self.assertIn(c.model, model_ids())
        self.assertEqual(len(c.choices), 1)
        choice = c.choices[0]
        self.assertEqual(choice.index, 0)
        self.assertEqual(choice.message.role, "assistant")
        self.assertIsInstance(choice.message.content, str)
        self.assertTrue(choice.message.content.strip(), c)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        self.assert_usage(c.usage)
        if choice.finish_reason == "length":
            self.assertEqual(c.usage.completion_tokens, MAX_TOKENS)
        self.assert_sources(sources_of(c))

    def test_a_system_message_and_earlier_turns_are_accepted(self):
        c = chat(
            [
                {"role": "system", "content": "You answer in one short sentence."},
                {"role": "user", "content": "What do bees make?"},
                {"role": "assistant", "content": "Honey."},
                {"role": "user", "content": QUESTION},
            ],
            max_tokens=8,
            extra_body={"k": 3},
        )
        self.assertTrue(c.choices[0].message.content.strip(), c)
        self.assert_usage(c.usage, 8)
        # The last user message is what is searched.
        self.assert_sources(sources_of(c))

    def test_without_retrieval_there_are_no_sources(self):
        c = ask("Say hello.", max_tokens=16, extra_body={"retrieval": False})
        self.assertEqual(sources_of(c), [])
        self.assertIsInstance(c.choices[0].message.content, str)
        self.assertIn(c.choices[0].finish_reason, ("stop", "length"))
        self.assert_usage(c.usage, 16)

    def test_max_tokens_ends_with_length(self):
        for limit in ({"max_tokens": 5}, {"max_completion_tokens": 5}):
            with self.subTest(**limit):
                c = ask(extra_body={"retrieval": False}, **limit)
                self.assertEqual(c.choices[0].finish_reason, "length", c)
                self.assertEqual(c.usage.completion_tokens, 5, c.usage)
                self.assertTrue(c.choices[0].message.content, c)

    def test_stop_sequences_end_the_answer_before_them(self):
        # Greedy answers repeat, so the free answer shows where a stop sequence will match.
        free = settled(extra_body={"retrieval": False}).choices[0].message.content
        words = [w.strip(".,;:!?()[]\"'") for w in free.split()]
        later = [w for w in words[2:] if len(w) >= 3 and free.index(w) > 0]
        if not later:
            self.fail(f"the free answer is too short to pick a stop sequence from: {free!r}")
        stop = later[0]
        expected = free[: free.index(stop)]
        for form in (stop, [stop, "@@never@@"]):
            with self.subTest(stop=form):
                c = ask(stop=form, extra_body={"retrieval": False})
                text = c.choices[0].message.content
                self.assertNotIn(stop, text)
                self.assertEqual(text.strip(), expected.strip(), f"free answer: {free!r}")
                self.assertEqual(c.choices[0].finish_reason, "stop")

    def test_sampling_settings_are_accepted(self):
        c = ask(
            "Name one thing bees do.",
            temperature=0.8,
            top_p=0.9,
            seed=7,
            max_tokens=12,
            extra_body={"retrieval": False},
        )
        self.assertIsInstance(c.choices[0].message.content, str)
        self.assertIn(c.choices[0].finish_reason, ("stop", "length"))

    def test_fields_that_common_clients_send_are_accepted(self):
        # Frameworks built on the SDK send these with their defaults; they change nothing here.
        c = ask(
            "Say hello.",
            max_tokens=4,
            n=1,
            user="outpost-test",
            presence_penalty=0,
            frequency_penalty=0,
            extra_body={"retrieval": False},
        )
        self.assertEqual(len(c.choices), 1)
        self.assert_usage(c.usage, 4)

    def test_a_seed_repeats_a_sampled_answer(self):
        settings = dict(temperature=1.0, seed=1234, max_tokens=16, extra_body={"retrieval": False})
        first = settled("Tell me about bread.", **settings).choices[0].message.content
        second = ask("Tell me about bread.", **settings).choices[0].message.content
        self.assertEqual(first, second)


class Streaming(Checks):
    def test_streams_the_answer_in_pieces_with_sources(self):
        # Greedy: the stream must give the answer given without streaming, both taken right
        # after the same prompt so that both start from the same cache (see settled()).
        plain = settled()
        raw = client().chat.completions.with_raw_response.create(
            model=llm_id(),
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=MAX_TOKENS,
            stream=True,
        )
        self.assertTrue(
            raw.headers.get("content-type", "").startswith("text/event-stream"), raw.headers
        )
        chunks = list(raw.parse())
        self.assertGreaterEqual(len(chunks), 3, chunks)
        for ch in chunks:
            self.assertEqual(ch.object, "chat.completion.chunk")
            self.assertEqual(ch.id, chunks[0].id)
            self.assertTrue(ch.id.startswith("chatcmpl-"), ch.id)
            self.assertEqual(ch.model, llm_id())
        with_choices = [ch for ch in chunks if ch.choices]
        self.assertEqual(with_choices[0].choices[0].delta.role, "assistant")
        pieces = [
            ch.choices[0].delta.content for ch in with_choices if ch.choices[0].delta.content
        ]
        self.assertGreater(len(pieces), 1, f"the text came in one piece: {pieces}")
        text = "".join(pieces)
        self.assertTrue(text.strip())
        for ch in with_choices[:-1]:
            self.assertIsNone(ch.choices[0].finish_reason, ch)
        last = with_choices[-1]
        self.assertIn(last.choices[0].finish_reason, ("stop", "length"))

        # Sources first (before the text, none cited yet), then with `cited` set at the end.
        self.assert_sources(sources_of(chunks[0]), cited_known=False)
        final = sources_of(chunks[-1])
        self.assert_sources(final)
        self.assertEqual(
            [(s["n"], s["chunk_ids"]) for s in final],
            [(s["n"], s["chunk_ids"]) for s in sources_of(chunks[0])],
        )
        usage = chunks[-1].usage
        self.assert_usage(usage)
        if last.choices[0].finish_reason == "length":
            self.assertEqual(usage.completion_tokens, MAX_TOKENS)

        # The same answer as without streaming.
        self.assertEqual(text, plain.choices[0].message.content)
        self.assertEqual(last.choices[0].finish_reason, plain.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, plain.usage.completion_tokens)
        self.assertEqual(
            [(s["n"], s["chunk_ids"], s["cited"]) for s in final],
            [(s["n"], s["chunk_ids"], s["cited"]) for s in sources_of(plain)],
        )

    def test_streams_without_retrieval(self):
        stream = client().chat.completions.create(
            model=llm_id(),
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            stream=True,
            extra_body={"retrieval": False},
        )
        chunks = list(stream)
        self.assertEqual(sources_of(chunks[0]), [])
        self.assertIn(chunks[-1].choices[0].finish_reason, ("stop", "length"))

    def test_usage_when_asked_with_stream_options(self):
        # The SDK's way to ask for usage in a stream; clients built on it send this by default.
        chunks = list(
            client().chat.completions.create(
                model=llm_id(),
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"retrieval": False},
            )
        )
        usages = [ch.usage for ch in chunks if ch.usage is not None]
        self.assertTrue(usages, chunks)
        self.assert_usage(usages[-1], 8)
        self.assertTrue("".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices))

    def test_a_bad_request_fails_before_streaming(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(
                model=llm_id(), messages=[], stream=True, max_tokens=8
            )
        self.assertEqual(e.exception.status_code, 400)


class Embeddings(Checks):
    SIMILAR = ("How do I count varroa mites?", "Counting the mites in a bee colony.")
    UNRELATED = "Inflate the bicycle tyre to the pressure on its sidewall."

    def assert_vector(self, v):
        self.assertIsInstance(v, list)
        self.assertEqual(len(v), DIMENSIONS)
        self.assertTrue(all(isinstance(x, float) for x in v))
        self.assertAlmostEqual(norm(v), 1.0, delta=1e-3)

    def assert_response(self, r, n):
        self.assertEqual(r.object, "list")
        self.assertEqual(r.model, EMBEDDING_MODEL)
        self.assertEqual([d.index for d in r.data], list(range(n)))
        for d in r.data:
            self.assertEqual(d.object, "embedding")
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens)

    def test_a_string_and_a_list_in_each_encoding(self):
        api = client().embeddings
        # The SDK asks for base64 by default and decodes it.
        one = api.create(model=EMBEDDING_MODEL, input=self.SIMILAR[0])
        self.assert_response(one, 1)
        self.assert_vector(one.data[0].embedding)

        texts = [*self.SIMILAR, self.UNRELATED]
        floats = api.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
        self.assert_response(floats, 3)
        for d in floats.data:
            self.assert_vector(d.embedding)

        # Asked for explicitly, base64 comes back as is: little-endian f32.
        b64 = api.create(model=EMBEDDING_MODEL, input=texts, encoding_format="base64")
        self.assert_response(b64, 3)
        decoded = []
        for d in b64.data:
            self.assertIsInstance(d.embedding, str)
            raw = base64.b64decode(d.embedding)
            self.assertEqual(len(raw), 4 * DIMENSIONS)
            decoded.append(list(struct.unpack(f"<{DIMENSIONS}f", raw)))

        defaults = api.create(model=EMBEDDING_MODEL, input=texts)
        for a, b, c in zip(floats.data, decoded, defaults.data):
            # A float's JSON text may round its last bit.
            self.assertLess(max(abs(x - y) for x, y in zip(a.embedding, b)), 1e-6)
            self.assertEqual(b, c.embedding)
        self.assertLess(max(abs(x - y) for x, y in zip(one.data[0].embedding, decoded[0])), 1e-5)

        v = [d.embedding for d in floats.data]
        self.assertGreater(cosine(v[0], v[1]), cosine(v[0], v[2]) + 0.1)
        self.assertGreater(cosine(v[0], v[1]), cosine(v[1], v[2]) + 0.1)


class Errors(Checks):
    def assert_openai_error(self, e, status):
        """The SDK's view of an OpenAI-shaped error body."""
        self.assertEqual(e.status_code, status)
        body = e.response.json()
        self.assertIsInstance(body.get("error"), dict, body)
        self.assertIsInstance(body["error"].get("message"), str, body)
        self.assertTrue(body["error"]["message"], body)
        self.assertIn("type", body["error"], body)
        # The SDK reads the message and the fields from it.
        self.assertEqual(e.body, body["error"])
        self.assertIn(body["error"]["message"], e.message)

    def test_empty_messages(self):
        with self.assertRaises(openai.BadRequestError) as e:
            chat([])
        self.assert_openai_error(e.exception, 400)
        self.assertEqual(e.exception.type, "invalid_request_error")
        self.assertEqual(e.exception.param, "messages")

    def test_unknown_role(self):
        with self.assertRaises(openai.BadRequestError) as e:
            chat([{"role": "wizard", "content": "hello"}])
        self.assert_openai_error(e.exception, 400)
        self.assertEqual(e.exception.type, "invalid_request_error")

    def test_wrong_api_key(self):
        wrong = client(api_key=TOKEN + "-wrong")
        with self.assertRaises(openai.AuthenticationError) as e:
            wrong.models.list()
        self.assert_openai_error(e.exception, 401)
        with self.assertRaises(openai.AuthenticationError):
            wrong.chat.completions.create(
                model=llm_id(), messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
        with self.assertRaises(openai.AuthenticationError):
            wrong.embeddings.create(model=EMBEDDING_MODEL, input="hi")

    def test_unknown_model(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client().chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
        self.assert_openai_error(e.exception, 404)

    def test_unknown_embedding_model(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client().embeddings.create(model="no-such-model", input="hi")
        self.assert_openai_error(e.exception, 404)

    def test_a_prompt_over_the_limit(self):
        # Far past the model's context (8192 tokens for SmolLM2), well within a request body;
        # then past the agent's request body limit too (1 MiB by default).
        for size in (8_000, 80_000):
            for stream in (False, True):
                with self.subTest(characters=25 * size, stream=stream):
                    with self.assertRaises(openai.APIStatusError) as e:
                        # Streamed, the error must come as the response's status, before any
                        # event (the SDK raises it from create()).
                        ask(
                            "The hive is quiet today. " * size,
                            max_tokens=4,
                            stream=stream,
                            extra_body={"retrieval": False},
                        )
                    # The SDK has no class of its own for 413.
                    self.assertNotIsInstance(e.exception, openai.BadRequestError)
                    self.assert_openai_error(e.exception, 413)

if __name__ == "__main__":
    unittest.main()
