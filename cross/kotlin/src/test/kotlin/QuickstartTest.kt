import java.io.ByteArrayOutputStream
import java.io.PrintStream
import java.nio.file.Path
import kotlin.io.path.createDirectory
import kotlin.io.path.writeText
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

/** The Kotlin program that cross/README.md shows is this suite's Quickstart.kt, and it runs. */
class QuickstartTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun `the README shows Quickstart_kt as it is`() {
        assertEquals(quickstartSource(), readmeBlock(),
            "cross/README.md's Kotlin block differs from cross/kotlin/src/test/kotlin/Quickstart.kt: copy the file into it")
    }

    @Test
    fun `the quickstart runs`() {
        val notes = dir.resolve("notes").createDirectory()
        notes.resolve("bees.md").writeText("# Bees\n\nHoney bees dance to show where flowers are.\n")
        val printed = ByteArrayOutputStream()
        val stdout = System.out
        System.setOut(PrintStream(printed, true))
        try {
            main(arrayOf(dir.resolve("quick.db").toString(), notes.toString()))
        } finally {
            System.setOut(stdout)
        }
        val lines = printed.toString().lines()
        assertTrue("files: 1 of 1" in lines, lines.toString())
        assertTrue("1 files added, 0 failed" in lines, lines.toString())
        assertTrue(lines.first { Regex("""\d\.\d{3} {2}.*""").matches(it) }.endsWith("Tides"), lines.toString())
        assertTrue(lines.any { it.startsWith("refused: ") && "psychic" in it }, lines.toString())
    }
}
