"""Tests of scripts/check-layers.py on small fake workspaces built in a temp dir.

Run: python3 -m unittest discover -s scripts/tests
"""

import contextlib
import re
import importlib.util
import io
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "check-layers.py"
# The file name has a hyphen, so it is loaded by path; registering it first lets its
# dataclasses resolve their own module.
_spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
cl = importlib.util.module_from_spec(_spec)
sys.modules["check_layers"] = cl
_spec.loader.exec_module(cl)


class Workspace:
    """A workspace with one or more crates, written from {path: source} maps."""

    def __init__(self, crates: dict[str, dict[str, str]], layers: str = ""):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        members = ", ".join(f'"{c}"' for c in crates)
        (self.root / "Cargo.toml").write_text(f"[workspace]\nmembers = [{members}]\n")
        for crate, files in crates.items():
            self.write(f"{crate}/Cargo.toml", f'[package]\nname = "fake-{crate}"\nversion = "0.1.0"\n')
            for path, src in files.items():
                self.write(f"{crate}/{path}", src)
        self.config = self.root / "layers.toml"
        self.config.write_text(textwrap.dedent(layers))

    def write(self, path: str, text: str) -> None:
        p = self.root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))

    def check(self, *args: str) -> tuple[int, list[str]]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cl.main(["--root", str(self.root), "--config", str(self.config), *args])
        return rc, out.getvalue().splitlines()

    def close(self) -> None:
        self._tmp.cleanup()


def crate(**files: str) -> dict[str, str]:
    """Maps keyword names to src paths: a__b -> src/a/b.rs, a__mod -> src/a/mod.rs."""
    return {"src/" + name.replace("__", "/") + ".rs": src for name, src in files.items()}


class CheckLayersTest(unittest.TestCase):
    def ws(self, crates, layers: str = "") -> Workspace:
        w = Workspace(crates, layers)
        self.addCleanup(w.close)
        return w

    def assert_cycle(self, lines: list[str], where: str, *members: str) -> None:
        """A cycle headline for folder `where` naming every member."""
        heads = [l.split(": ", 1) for l in lines if l.startswith("cycle in ")]
        found = any(
            h == f"cycle in {where}" and set(members) <= set(re.findall(r"\w+", rest)) for h, rest in heads
        )
        self.assertTrue(found, f"no cycle of {members} in {where}:\n" + "\n".join(lines))

    def test_clean_tree_passes(self):
        w = self.ws({"app": crate(
            lib="pub mod a;\npub mod b;\npub mod net;\npub use a::A;\n",
            a="use crate::b::B;\nuse crate::net::tcp::Tcp;\npub struct A(B, Tcp);\n",
            b="pub struct B;\n",
            net="pub mod tcp;\npub mod udp;\n",
            net__tcp="use super::udp::Udp;\npub struct Tcp(Udp, crate::b::B);\n",
            net__udp="pub struct Udp;\n",
        )})
        rc, lines = w.check()
        self.assertEqual(rc, 0, lines)
        self.assertEqual(lines, ["layers: 1 crates, 6 modules, 0 cycles, 0 upward imports"])

    def test_use_crate_cycle_found(self):
        w = self.ws({"app": crate(
            lib="mod a;\nmod b;\n",
            a="use crate::b::B;\npub struct A;\n",
            b="\nuse crate::a::A;\npub struct B;\n",
        )})
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assert_cycle(lines, "app crate", "a", "b")
        self.assertIn("    a -> b at app/src/a.rs:1", lines)
        self.assertIn("    b -> a at app/src/b.rs:2", lines)
        self.assertEqual(lines[-1], "layers: 1 crates, 3 modules, 1 cycles, 0 upward imports")

    def test_inline_path_cycle_found(self):
        w = self.ws({"app": crate(
            lib="mod a;\nmod b;\n",
            a="pub fn f() {}\npub fn g() {\n    crate::b::h();\n}\n",
            b="pub fn h() {\n    let _ = crate::a::f();\n}\n",
        )})
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assert_cycle(lines, "app crate", "a", "b")
        self.assertIn("    a -> b at app/src/a.rs:3", lines)

    def test_super_cycle_inside_folder_found(self):
        # net uses the `net.rs` + `net/` layout; io the `io/mod.rs` one.
        w = self.ws({"app": crate(
            lib="mod net;\nmod io;\n",
            net="mod tcp;\nmod udp;\n",
            net__tcp="use super::udp;\n",
            net__udp="fn f() { super::tcp::g() }\n",
            io__mod="mod file;\nmod pipe;\n",
            io__file="use super::{pipe::Pipe};\n",
            io__pipe="use super::super::io::file::File;\n",
        )})
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assert_cycle(lines, "app crate::net", "tcp", "udp")
        self.assert_cycle(lines, "app crate::io", "file", "pipe")
        self.assertEqual(lines[-1], "layers: 1 crates, 7 modules, 2 cycles, 0 upward imports")

    def test_comments_and_literals_ignored(self):
        w = self.ws({"app": crate(
            lib="mod a;\nmod b;\n",
            a="use crate::b::B;\n",
            b='''\
                //! Docs: [`crate::a::A`].
                // use crate::a::A;
                /* crate::a::f(); /* nested */ crate::a::g(); */
                const Q: char = '"';
                const S: &str = "crate::a::f() \\" crate::a::g()";
                const R: &str = r#"crate::a::f() " still inside"#;
                const C: char = '\\'';
                fn f<'x>(s: &'x str) -> &'x str { "use crate::a;"; s }
                pub struct B;
            ''',
        )})
        rc, lines = w.check()
        self.assertEqual(rc, 0, lines)

    def test_cfg_test_module_ignored(self):
        w = self.ws({"app": crate(
            lib="mod a;\nmod b;\n",
            a="use crate::b::B;\n",
            b='''\
                pub struct B;

                #[cfg(test)]
                #[allow(unused)]
                mod tests {
                    use crate::a;
                    fn t() { crate::a::f(); }
                }
            ''',
        )})
        rc, lines = w.check()
        self.assertEqual(rc, 0, lines)

    def test_upward_import_against_layers(self):
        layers = '''\
            [app]
            root = ["engine", ["search", "ingest"], "store"]
        '''
        w = self.ws({"app": crate(
            lib="mod engine;\nmod search;\nmod ingest;\nmod store;\nmod util;\n",
            engine="",
            search="use crate::ingest::i;\nuse crate::store::t;\nuse crate::util::u;\n",
            ingest="use crate::store::t;\n",
            store="\nuse crate::engine::Engine;\nuse crate::util::u;\n",
            util="",
        )}, layers)
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assertEqual(
            [l for l in lines if l.startswith("upward")],
            ["upward import in app crate: store (layer 3) -> engine (layer 1) at app/src/store.rs:2"],
        )
        self.assertEqual(lines[-1], "layers: 1 crates, 6 modules, 0 cycles, 1 upward imports")

    def test_unknown_layer_name_reported(self):
        w = self.ws({"app": crate(lib="mod a;\n", a="")}, '[app]\nroot = ["a", "gone"]\n')
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assertTrue(any("`gone`" in l for l in lines), lines)

    def test_multiline_nested_use_parsed(self):
        src = "use crate::{\n    a::{b, c as _},\n    d,\n};\n"
        w = self.ws({"app": crate(lib="mod a;\nmod d;\nmod e;\n", e=src, d="use crate::e;\n",
                                  a="pub mod b;\npub mod c;\n", a__b="use crate::e::X;\n", a__c="")})
        sf = cl.SourceFile.parse(w.root / "app/src/e.rs")
        self.assertEqual(
            sorted((line, segs) for line, _, segs in sf.refs),
            [(2, ("crate", "a", "b")), (2, ("crate", "a", "c")), (3, ("crate", "d"))],
        )
        rc, lines = w.check()
        self.assert_cycle(lines, "app crate", "a", "d", "e")
        self.assertIn("    e -> a at app/src/e.rs:2 (+1 more)", lines)
        self.assertIn("    e -> d at app/src/e.rs:3", lines)

    def test_parent_items_allowed_unless_forbidden(self):
        files = crate(lib="mod net;\npub struct Thing;\n", net__mod="mod tcp;\npub struct Conn;\n",
                      net__tcp="use super::Conn;\nuse crate::Thing;\n")
        rc, lines = self.ws({"app": files}).check()
        self.assertEqual(rc, 0, lines)
        rc, lines = self.ws({"app": files}, "[app]\nforbid_parent_imports = true\n").check()
        self.assertEqual(rc, 1)
        self.assertEqual(len([l for l in lines if l.startswith("upward")]), 2, lines)
        # At the top of the file it applies to every crate, listed or not.
        rc, lines = self.ws({"app": files}, "forbid_parent_imports = true\n").check()
        self.assertIn(
            "upward import in app: crate::net::tcp uses items of its ancestor crate::net at app/src/net/tcp.rs:1",
            lines,
        )

    def test_inline_module_super_and_crate_filter(self):
        # `super` inside an inline module is the file's own module, not its parent.
        w = self.ws({
            "app": crate(lib="mod a;\nmod b;\n", a="mod imp { use super::helper; }\nfn helper() {}\n",
                         b="use crate::a;\n"),
            "bad": crate(main="mod x;\nmod y;\n", x="use crate::y;\n", y="use crate::x;\n"),
        })
        rc, lines = w.check("--crate", "app")
        self.assertEqual((rc, lines), (0, ["layers: 1 crates, 3 modules, 0 cycles, 0 upward imports"]))
        rc, lines = w.check("--crate", "fake-bad", "--verbose")
        self.assertEqual(rc, 1)
        self.assertIn("bad[bin fake-bad] crate: 2 modules", lines)
        self.assertIn("    x -> y", lines)

    # -- the door and SQL rules ----------------------------------------------------------------

    DOOR = """\
        [door]
        crate = "core"
        names = ["Store"]
        methods = ["store", "store_mut", "connection"]
        also = ["examples"]
    """

    def door_ws(self) -> Workspace:
        w = self.ws({
            "core": crate(lib="pub mod db;\npub use db::Store;\npub struct Engine;\n",
                          db="pub struct Store;\nimpl Store { pub fn connection(&self) {} }\n"),
            "app": {
                "src/main.rs": """\
                    //! Uses the engine; a `Store` in a comment is fine.
                    use outpost_core::{Engine, Store};
                    fn main() {
                        let e = Engine;
                        let s = "Store and .connection() in a string are fine";
                        let c = e.store().connection();
                        flag.store(true, Ordering::SeqCst);
                        let roots = rustls::RootCertStore::empty();
                        let m = e . store_mut ( );
                    }
                """,
                "tests/it.rs": "fn t(s: outpost_core::db::Store) {}\n",
            },
        }, self.DOOR)
        w.write("examples/demo.rs", "fn d(e: &Engine) { e.connection(); }\n")
        return w

    def test_door_flags_what_reaches_beneath_the_engine_outside_its_crate(self):
        rc, lines = self.door_ws().check()
        self.assertEqual(rc, 1)
        door = sorted(l.split(" reaches")[0] for l in lines if l.startswith("door: "))
        self.assertEqual(door, [
            "door: app/src/main.rs:2: `Store`",
            "door: app/src/main.rs:6: `.connection()`",
            "door: app/src/main.rs:6: `.store()`",
            "door: app/src/main.rs:9: `.store_mut()`",
            "door: app/tests/it.rs:1: `Store`",
            "door: examples/demo.rs:1: `.connection()`",
        ])
        self.assertEqual(lines[-1], "layers: 2 crates, 3 modules, 0 cycles, 0 upward imports, 6 door crossings")

    def test_door_with_crate_filter_checks_that_crate_only(self):
        w = self.door_ws()
        rc, lines = w.check("--crate", "core")
        self.assertEqual((rc, lines[-1]),
                         (0, "layers: 1 crates, 2 modules, 0 cycles, 0 upward imports, 0 door crossings"))
        rc, lines = w.check("--crate", "app")
        self.assertEqual(rc, 1)
        self.assertEqual(len([l for l in lines if l.startswith("door: ")]), 5, lines)  # not examples/

    def test_door_config_must_name_what_exists(self):
        w = self.ws({"app": crate(main="fn main() {}\n")},
                    '[door]\ncrate = "core"\nnames = ["Store"]\nalso = ["gone"]\n')
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assertIn("config: [door] crate `core` is not a workspace crate", lines)
        self.assertIn("config: [door] also `gone` is not a folder", lines)
        w = self.ws({"app": crate(main="fn main() {}\n")}, '[door]\ncrate = "app"\nnamez = ["Store"]\n')
        rc, _ = w.check()
        self.assertEqual(rc, 2)

    SQL = """\
        [sql]
        crate = "core"
        allowed = ["src/db"]
        calls = ["prepare", "prepare_cached", "query_row", "query_map", "execute", "execute_batch"]
    """

    INDEX_RS = """\
        use crate::db;
        const LOG: &str = "DELETE FROM ann_log WHERE id <= ?1";
        fn build(c: &C) {
            let mut s = c.prepare(&format!(
                "SELECT k.id, v.embedding
                 FROM chunks k JOIN {t} v ON v.rowid = k.seq",
            ));
            c.execute_batch("BEGIN");
            let t = r#"INSERT OR IGNORE INTO keys (k) VALUES ("x")"#;
            let m = include_str!("../../migrations/0001_init.sql");
            let p = "PRAGMA user_version";
            rusqlite::Connection::execute(c, "x", []);
        }
        #[cfg(test)]
        mod tests {
            fn t(c: &C) { c.execute("UPDATE documents SET rev = 2", []); }
        }
    """

    WORDS_RS = """\
        // Prose, not SQL: none of these is reported.
        const A: &str = "select a file, then Update the index";
        const B: &str = "SELECT is a keyword; DELETE from the list; CREATE the index";
        const C: &str = "PRAGMA integrity_check found 3 problems";
        const D: &str = "ATTACH the cable";
        fn run(job: &Job) { job.run(); pool.install(|| 1); }
        /// `conn.execute("DELETE FROM t")` in a doc comment is not code.
        fn prepare(x: u8) {}
    """

    def sql_ws(self, layers: str) -> Workspace:
        return self.ws({"core": crate(
            lib="pub mod db;\npub mod index;\npub mod words;\n",
            db__mod='pub fn count(c: &C) { c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)); }\n',
            index=self.INDEX_RS,
            words=self.WORDS_RS,
        )}, layers)

    def test_sql_outside_its_folder_reported_by_line(self):
        rc, lines = self.sql_ws(self.SQL).check()
        self.assertEqual(rc, 1)
        sql = [l.removesuffix(" outside core/src/db") for l in lines if l.startswith("sql: ")]
        self.assertEqual(sql, [
            "sql: core/src/index.rs:2: SQL string literal (`DELETE FROM`)",
            "sql: core/src/index.rs:4: `.prepare(` runs SQL",
            "sql: core/src/index.rs:5: SQL string literal (`SELECT k.id,`)",
            "sql: core/src/index.rs:8: `.execute_batch(` runs SQL",
            "sql: core/src/index.rs:9: SQL string literal (`INSERT OR IGNORE INTO`)",
            "sql: core/src/index.rs:10: SQL file included (`../../migrations/0001_init.sql`)",
            "sql: core/src/index.rs:11: SQL string literal (`PRAGMA user_version`)",
            "sql: core/src/index.rs:12: `.execute(` runs SQL",
        ])
        self.assertEqual(lines[-1], "layers: 1 crates, 4 modules, 0 cycles, 0 upward imports, 8 SQL outside its folder")

    def test_sql_in_test_items_reported_when_asked(self):
        rc, lines = self.sql_ws(self.SQL + "test_items = true\n").check()
        self.assertEqual(rc, 1)
        self.assertIn("sql: core/src/index.rs:16: `.execute(` runs SQL outside core/src/db", lines)
        self.assertIn("sql: core/src/index.rs:16: SQL string literal (`UPDATE documents SET`) outside core/src/db", lines)
        self.assertEqual(lines[-1], "layers: 1 crates, 4 modules, 0 cycles, 0 upward imports, 10 SQL outside its folder")

    def test_sql_multiline_keyword_reported_on_its_line(self):
        src = 'fn f() {\n    let q = "\n        SELECT id\n        FROM t";\n}\n'
        w = self.ws({"core": crate(lib="mod a;\n", a=src)}, '[sql]\ncrate = "core"\n')
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assertIn("sql: core/src/a.rs:3: SQL string literal (`SELECT id FROM`)", lines)

    def test_sql_config_must_name_what_exists(self):
        w = self.ws({"core": crate(lib="")}, '[sql]\ncrate = "core"\nallowed = ["src/db"]\n')
        rc, lines = w.check()
        self.assertEqual(rc, 1)
        self.assertIn("config: [sql] allowed `src/db` is not a folder of core", lines)
        rc, _ = self.ws({"core": crate(lib="")}, '[sql]\ncrate = "core"\ntest_items = "yes"\n').check()
        self.assertEqual(rc, 2)

    def test_string_literal_spans(self):
        src = 'let a = "x\\"y"; let b = r#"q "r" s"#; let c = b"z"; let d = \'"\';'
        lits = []
        stripped = cl.strip_code(src, lits)
        self.assertEqual([src[s:e] for _, s, e in lits], ['x\\"y', 'q "r" s', "z"])
        self.assertEqual([stripped[m] for m, _, _ in lits], ['"', "r", '"'])


if __name__ == "__main__":
    unittest.main()
