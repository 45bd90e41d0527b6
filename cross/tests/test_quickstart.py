"""The README's Python program (cross/tests/python/quickstart.py, included in cross/README.md
and kept equal to it by test_readme.py) runs against the real library and says what it did."""

import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]


class QuickstartTest(unittest.TestCase):
    def test_the_readme_program_indexes_searches_and_reports_a_refused_mode(self):
        with tempfile.TemporaryDirectory() as d:
            folder = pathlib.Path(d, "notes")
            folder.mkdir()
            (folder / "moon.md").write_text("The moon raises two tidal bulges as the earth turns.")
            (folder / "sun.md").write_text("The sun adds its own, smaller tide.")
            out = subprocess.run(
                [sys.executable, str(ROOT / "cross/tests/python/quickstart.py"),
                 os.path.join(d, "q.db"), str(folder)],
                capture_output=True, text=True, timeout=300, env=os.environ.copy(),
            )
            self.assertEqual(out.returncode, 0, out.stderr)
            lines = out.stdout.splitlines()
            self.assertIn("files: 2 of 2", lines)
            self.assertIn("2 files added, 0 failed", lines)
            self.assertTrue(any(line.endswith("  Tides") for line in lines), out.stdout)
            self.assertTrue(any(line.startswith("context: ") for line in lines), out.stdout)
            self.assertTrue(any(line.startswith("refused: ") and "psychic" in line for line in lines), out.stdout)


if __name__ == "__main__":
    unittest.main()
