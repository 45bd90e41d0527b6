import java.nio.file.Path
import java.util.UUID
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import uniffi.outpost_ffi.*

/** Two devices, each an Engine on its own file, sync through the real central Postgres. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SyncTest {
    lateinit var url: String

    @TempDir
    lateinit var dir: Path

    @BeforeAll
    fun central() {
        url = centralDatabase()
    }

    private fun device(name: String) = Engine.open(dir.resolve("$name.db").toString(), EngineConfig())

    @Test
    fun `two devices converge through the central store`() = runBlocking {
        val central = CentralConfig(postgresUrl = url, userId = UUID.randomUUID().toString(), timeoutS = 10u)
        device("a").use { a ->
            device("b").use { b ->
                val doc = a.ingestText("Glaciers carve U-shaped valleys.", "Glaciers", "notes/ice", null)
                val trip = a.createConversation("field trip")
                a.addMessage(trip.id, "user", "Bring crampons.")
                val progress = Recorded()
                val pushed = a.syncNow(central, progress)
                assertEquals(3uL to 3uL, pushed.pushed to pushed.pushApplied)
                assertTrue(Triple("push", 3L, 3L) in progress.steps, progress.steps.toString())
                assertEquals(0uL, a.syncStatus().outboxDepth)

                val pulled = b.syncNow(central)
                assertEquals(3uL, pulled.pulled)
                assertEquals(doc.documentId, b.search("how are valleys shaped", 1u, "vector", listOf())[0].documentId)
                assertEquals("Bring crampons.", b.recentMessages(trip.id, 5u)[0].content)

                // Another user sees nothing of it.
                val other = CentralConfig(postgresUrl = url, userId = UUID.randomUUID().toString(), timeoutS = 10u)
                device("c").use { c -> assertEquals(0uL, c.syncNow(other).pulled) }
            }
        }
    }

    @Test
    fun `an unreachable central store is a sync error, and a cancelled sync changes nothing`() = runBlocking {
        device("d").use { d ->
            d.ingestText("Waiting in the outbox.", null, null, null)
            val down = CentralConfig(postgresUrl = "postgres://postgres@127.0.0.1:9/none",
                userId = UUID.randomUUID().toString(), timeoutS = 2u)
            val error = assertThrows<OutpostException.Sync> { d.syncNow(down) }
            assertTrue("127.0.0.1:9" in error.detail, error.detail)
            assertEquals(1uL, d.syncStatus().outboxDepth)

            // With a long timeout the sync keeps retrying; the caller's scope gives up first.
            val patient = down.copy(timeoutS = 60u)
            val started = System.nanoTime()
            assertThrows<TimeoutCancellationException> { withTimeout(1_000) { d.syncNow(patient) } }
            assertTrue(System.nanoTime() - started < 5_000_000_000L, "cancelled at once, not after 60 s")
            assertEquals(1uL, d.syncStatus().outboxDepth)
        }
    }
}
