import kotlinx.coroutines.runBlocking
import uniffi.outpost_ffi.*

// Opens a database (the model from OUTPOST_HOME), indexes a text and a folder, and asks.
fun main(args: Array<String>) = runBlocking {
    val (database, folder) = args
    Engine.open(database, EngineConfig()).use { engine ->
        engine.ingestText("Tides are caused by the pull of the moon.", "Tides", "notes/tides", null)
        // A long call: a suspend fun, cancelled with its coroutine; progress as it goes.
        val summary = engine.ingestPath(folder, object : ProgressListener {
            override fun onProgress(phase: String, done: ULong, total: ULong) =
                println("$phase: $done of $total")
        })
        println("${summary.added} files added, ${summary.failed} failed")
        for (hit in engine.search("what causes tides", 3u, "hybrid", listOf())) {
            println("%.3f  %s".format(hit.score, hit.title))
        }
        try {
            engine.search("tides", 3u, "psychic", listOf())
        } catch (e: OutpostException.InvalidInput) {
            println("refused: ${e.detail}")
        }
    }
}
