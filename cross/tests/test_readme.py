"""cross/README.md cannot drift from the programs the tests compile: every block between
`<!-- include: PATH -->` and `<!-- /include -->` is a fenced code block whose body equals the file
PATH (relative to the repository) byte for byte. Needs no bindings."""

import pathlib
import re
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "cross/README.md"
BLOCK = re.compile(
    r"<!-- include: (?P<path>\S+) -->\n```[a-z]*\n(?P<body>.*?)```\n<!-- /include -->", re.S
)


class ReadmeTest(unittest.TestCase):
    def test_included_programs_equal_their_files(self):
        text = README.read_text()
        blocks = list(BLOCK.finditer(text))
        self.assertEqual(len(blocks), text.count("<!-- include: "), "an include marker without its block")
        paths = [b["path"] for b in blocks]
        self.assertIn("cross/tests/swift/Example/main.swift", paths)
        self.assertIn("cross/tests/python/quickstart.py", paths)
        self.assertIn("cross/python/examples/langchain_quickstart.py", paths)
        for block in blocks:
            with self.subTest(path=block["path"]):
                self.assertEqual(block["body"], (ROOT / block["path"]).read_text(),
                                 f"cross/README.md's copy of {block['path']} differs from the file")


if __name__ == "__main__":
    unittest.main()
