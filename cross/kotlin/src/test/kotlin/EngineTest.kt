import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.atomic.AtomicBoolean
import kotlin.io.path.createDirectory
import kotlin.io.path.writeText
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import uniffi.outpost_ffi.*

/**
 * The Outpost library from Kotlin on the JVM: the generated bindings, compiled here, load the
 * real liboutpost_ffi through JNA as an Android app does. The same ground as the Python suite
 * (cross/tests/test_engine.py), plus the Kotlin idioms: suspend functions cancelled with their
 * coroutine, progress listeners, typed exceptions, a shut-down engine.
 */
class EngineTest {
    @TempDir
    lateinit var dir: Path
    lateinit var engine: Engine

    @BeforeEach
    fun open() {
        engine = Engine.open(dir.resolve("outpost.db").toString(), EngineConfig())
    }

    @AfterEach
    fun close() = engine.close()

    private fun note(text: String, title: String? = null, source: String? = null, metadata: String? = null) =
        engine.ingestText(text, title, source, metadata)

    @Test
    fun `ingest, search, context and conversations`() = runBlocking {
        val tides = note("Tides are caused by the gravitational pull of the moon and the sun.",
            "Tides", "notes/tides", """{"topic": "ocean"}""")
        assertEquals("added", tides.outcome)
        assertEquals(1u, tides.chunks)
        val again = note("Tides are caused by the gravitational pull of the moon and the sun.",
            "Tides", "notes/tides", """{"topic": "ocean"}""")
        assertEquals("unchanged" to tides.documentId, again.outcome to again.documentId)

        val folder = dir.resolve("notes").createDirectory()
        folder.resolve("bees.md").writeText("# Bees\n\nHoney bees dance to show where flowers are.\n")
        folder.resolve("volcano.txt").writeText("Volcanoes erupt when magma rises through the crust.")
        folder.resolve("empty.txt").writeText("")
        val progress = Recorded()
        val summary = engine.ingestPath(folder.toString(), progress)
        assertEquals(2u to 1u, summary.added to summary.failed)
        assertTrue("empty.txt" in summary.failures[0], summary.failures.toString())
        assertEquals((1L..3L).map { Triple("files", it, 3L) }, progress.steps.toList())

        val hits = engine.search("what causes tides", 3u, "hybrid", listOf())
        assertEquals(tides.documentId, hits[0].documentId)
        val onlyOcean = engine.search("dance", 5u, "vector", listOf("topic=ocean"))
        assertTrue(onlyOcean.all { it.documentId == tides.documentId })
        assertEquals("volcano", engine.search("magma", 1u, "text", listOf())[0].title)

        val trip = engine.createConversation("coast trip")
        engine.addMessage(trip.id, "user", "We go to the coast next week.")
        engine.addMessage(trip.id, "assistant", "Check the tide tables first.")
        assertEquals(listOf("user", "assistant"), engine.recentMessages(trip.id, 10u).map { it.role })
        val context = engine.context("why are there tides", 300u, trip.id)
        assertTrue("moon" in context.text)
        assertTrue(context.tokens <= 300u)
        assertEquals(tides.documentId, context.citations[0].documentId)
        assertTrue(context.messages.size >= 2)

        engine.deleteDocument(tides.documentId)
        assertTrue(engine.search("tides", 5u, "vector", listOf()).none { it.documentId == tides.documentId })
        val stats = engine.stats()
        assertEquals(Triple(2uL, 1uL, 2uL), Triple(stats.documents, stats.conversations, stats.messages))
        assertEquals((2 + 1 + 1 + 2).toULong(), engine.syncStatus().outboxDepth)
    }

    @Test
    fun `errors arrive as typed exceptions with a message`() {
        note("Bees dance.")
        val wrongDimension = assertThrows<OutpostException.InvalidInput> {
            engine.searchVector(listOf(0.1f, 0.2f, 0.3f), 5u)
        }
        assertTrue("dimension" in wrongDimension.detail, wrongDimension.detail)
        assertTrue(wrongDimension.detail in wrongDimension.message!!)
        val badFilter = assertThrows<OutpostException.InvalidInput> {
            engine.search("bees", 5u, "hybrid", listOf("colour=red"))
        }
        assertTrue("colour" in badFilter.detail, badFilter.detail)
        assertThrows<OutpostException.InvalidInput> { engine.search("bees", 5u, "psychic", listOf()) }
        assertThrows<OutpostException.NotFound> {
            engine.deleteDocument("0123abcd-0000-0000-0000-000000000000")
        }
        val missing = assertThrows<OutpostException.Model> {
            Engine.open(dir.resolve("other.db").toString(), EngineConfig(modelDir = "/nonexistent/model"))
        }
        assertTrue("/nonexistent/model" in missing.detail, missing.detail)
        val garbage = dir.resolve("garbage.db")
        Files.writeString(garbage, "this is not a database, ".repeat(200))
        val unreadable = assertThrows<OutpostException.Database> { Engine.open(garbage.toString(), EngineConfig()) }
        assertTrue("garbage.db" in unreadable.detail, unreadable.detail)
        assertTrue(Files.readString(garbage).startsWith("this is not a database"), "left untouched")
        // Every kind is one sealed type: an app can catch them all at once.
        val any: OutpostException = assertThrows { engine.search("", 5u, "hybrid", listOf()) }
        assertTrue(any is OutpostException.InvalidInput, any.toString())
    }

    @Test
    fun `coroutines search in parallel while another ingests`() = runBlocking {
        repeat(20) { note("Seed note $it about rivers and deltas.") }
        val done = AtomicBoolean(false)
        val searchers = (1..3).map {
            async(Dispatchers.IO) {
                var searches = 0
                while (!done.get()) {
                    assertEquals(5, engine.search("river delta", 5u, "hybrid", listOf()).size)
                    searches++
                }
                searches
            }
        }
        launch(Dispatchers.IO) {
            try {
                repeat(60) { note("Fresh note $it about glaciers.") }
            } finally {
                done.set(true)
            }
        }.join()
        val counts = searchers.awaitAll()
        assertTrue(counts.all { it > 0 }, counts.toString())
        assertEquals(80uL, engine.stats().documents)
    }

    private fun manyNotes(): Path {
        val folder = dir.resolve("many").createDirectory()
        for (i in 0 until 300) {
            folder.resolve("n%03d.txt".format(i)).writeText("Note $i: " + "the harbour lights flicker. ".repeat(20))
        }
        return folder
    }

    @Test
    fun `cancelling the coroutine stops the ingest and leaves whole documents`() = runBlocking {
        val folder = manyNotes()
        val progress = Recorded()
        val ingest = launch(Dispatchers.Default) { engine.ingestPath(folder.toString(), progress) }
        while (progress.steps.size < 5) delay(10)
        ingest.cancelAndJoin()
        // The Rust side finishes the file it is on, sees its future dropped, and stops.
        delay(500)
        val indexed = engine.stats().documents
        delay(500)
        val stats = engine.stats()
        assertEquals(indexed, stats.documents, "nothing more is indexed after the cancel")
        assertTrue(indexed in 5uL until 300uL, "indexed $indexed of 300")
        // Each document indexed is whole: its one chunk is there and found.
        assertEquals(indexed, stats.chunks)
        assertEquals(indexed.toInt(), engine.search("harbour lights", 300u, "text", listOf()).size)
        // The engine goes on: the same folder again adds only what was left.
        val rest = engine.ingestPath(folder.toString())
        assertEquals(300uL - indexed, rest.added.toULong())
        assertEquals(indexed, rest.unchanged.toULong())
    }

    @Test
    fun `cancel() stops a long call with the Cancelled exception`() = runBlocking {
        val folder = manyNotes()
        val progress = Recorded()
        val ingest = async(Dispatchers.Default) {
            assertThrows<OutpostException.Cancelled> { engine.ingestPath(folder.toString(), progress) }
        }
        while (progress.steps.isEmpty()) delay(10)
        engine.cancel()
        val cancelled = ingest.await()
        assertTrue("cancelled" in cancelled.detail, cancelled.detail)
        assertTrue(engine.stats().documents < 300uL)
        // Later calls are not affected.
        assertEquals(1u, engine.ingestPath(folder.resolve("n000.txt").toString()).unchanged)
    }

    @Test
    fun `the model loads at its first use`() {
        note("Lighthouses guide ships past the reef.", "Lights")
        assertTrue(engine.modelLoaded())
        engine.shutdown()
        Engine.open(dir.resolve("outpost.db").toString(), EngineConfig()).use { e ->
            // Searching the text index and reading counts need no model.
            assertEquals("Lights", e.search("reef", 1u, "text", listOf()).first().title)
            assertEquals(1uL, e.stats().documents)
            assertFalse(e.modelLoaded())
            // The first text query loads it.
            assertEquals("Lights", e.search("lighthouse", 1u, "vector", listOf()).first().title)
            assertTrue(e.modelLoaded())
        }
        Engine.open(dir.resolve("outpost.db").toString(), EngineConfig(preloadModel = true)).use { e ->
            assertTrue(e.modelLoaded())
        }
    }

    @Test
    fun `a shut-down engine refuses calls with a typed error`() = runBlocking {
        note("Lanterns in the fog.")
        engine.shutdown()
        val closed = assertThrows<OutpostException.Closed> { engine.search("lanterns", 5u, "hybrid", listOf()) }
        assertTrue("shut down" in closed.detail, closed.detail)
        assertThrows<OutpostException.Closed> { engine.ingestPath(dir.toString()) }
        assertThrows<OutpostException.Closed> { engine.stats() }
        engine.shutdown() // twice is harmless
        // The file was released: it opens again, with what was written.
        Engine.open(dir.resolve("outpost.db").toString(), EngineConfig()).use { again ->
            assertEquals(1uL, again.stats().documents)
        }
        // close() (AutoCloseable, `use {}`) releases the object itself: later calls are refused
        // on the Kotlin side, never a crash.
        val released = Engine.open(dir.resolve("other.db").toString(), EngineConfig())
        released.close()
        assertThrows<IllegalStateException> { released.stats() }
    }
}
