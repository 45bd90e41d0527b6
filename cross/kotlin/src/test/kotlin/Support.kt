import java.nio.file.Files
import java.nio.file.Path
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import uniffi.outpost_ffi.ProgressListener

/** A ProgressListener that records what it is told (on the long call's worker thread). */
class Recorded : ProgressListener {
    val steps = CopyOnWriteArrayList<Triple<String, Long, Long>>()

    override fun onProgress(phase: String, done: ULong, total: ULong) {
        steps.add(Triple(phase, done.toLong(), total.toLong()))
    }
}

/** The repository (Maven passes it as outpost.root). */
private val root: Path = Path.of(System.getProperty("outpost.root")).toAbsolutePath().normalize()

private fun exec(vararg command: String, env: Map<String, String> = emptyMap()): String {
    val process = ProcessBuilder(*command).redirectErrorStream(true)
        .also { it.environment().putAll(env) }.start()
    val output = process.inputStream.bufferedReader().readText()
    check(process.waitFor(120, TimeUnit.SECONDS) && process.exitValue() == 0) {
        "${command.joinToString(" ")} failed: $output"
    }
    return output
}

/**
 * A new database on the test Postgres (OUTPOST_TEST_PG_URL, which scripts/test.sh starts) with
 * Supabase's auth emulated and every central migration applied, oldest first, as
 * `supabase db push` applies them; its superuser URL. Never skipped: without it the tests fail.
 */
fun centralDatabase(): String {
    val server = System.getenv("OUTPOST_TEST_PG_URL")
        ?: error("OUTPOST_TEST_PG_URL is not set: run scripts/test.sh, which starts the test Postgres")
    val psql = Path.of(exec(root.resolve("scripts/pg.sh").toString(), "bin").trim(), "psql").toString()
    val name = "ffi_kt_" + UUID.randomUUID().toString().replace("-", "")
    exec(psql, "-X", "-q", "-d", server, "-c", "CREATE DATABASE $name")
    val url = server.substringBeforeLast('/') + "/" + name
    val migrations = Files.list(root.resolve("migrations/supabase")).use { files ->
        files.filter { it.toString().endsWith(".sql") }.sorted().toList()
    }
    for (sql in listOf(root.resolve("sync/tests/sql/supabase_auth_emulation.sql")) + migrations) {
        exec(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", sql.toString(),
            env = mapOf("PGOPTIONS" to "-c client_min_messages=warning"))
    }
    return url
}

/** The README's Kotlin block, between its markers. */
fun readmeBlock(): String {
    val readme = Files.readString(root.resolve("cross/README.md"))
    val start = "<!-- kotlin: cross/kotlin/src/test/kotlin/Quickstart.kt -->\n```kotlin\n"
    val from = readme.indexOf(start)
    check(from >= 0) { "cross/README.md has no block after: $start" }
    val body = from + start.length
    return readme.substring(body, readme.indexOf("```\n", body))
}

/** The README example's source, as compiled here. */
fun quickstartSource(): String =
    Files.readString(root.resolve("cross/kotlin/src/test/kotlin/Quickstart.kt"))
