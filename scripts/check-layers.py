#!/usr/bin/env python3
"""Checks the module structure of every crate in the Cargo workspace: no import cycles between
sibling modules, no sibling importing a higher layer than its own, nothing outside the engine's
crate reaching beneath its one door, and no SQL outside the one folder that holds it.

It reads the Rust sources only (no compiler): for each crate target (src/lib.rs, src/main.rs,
src/bin/*.rs, or the paths in the member's Cargo.toml) it follows the `mod x;` declarations to
build the module tree from files and folders, then collects every reference to a module of the
same crate: `use crate::...`, `use super::...`, `use self::...` (nested braces, multi-line) and
inline paths such as `crate::a::f()` or `super::x::Y`. Comments, string and char literals are
blanked first, and items under `#[cfg(test)]` (the `mod tests` blocks) are ignored, as are the
integration tests under tests/. Inline `mod x { }` blocks count as part of their file.

Each reference names the module with the longest existing path prefix. Level by level (the
crate root's children, then each module folder's children), a reference from anywhere inside
sibling A to anywhere inside sibling B is an edge A -> B; references between a module and its
own ancestors or descendants are not sibling edges. Two checks follow:

  * cycles: any strongly connected set of more than one sibling is an error;
  * layers: scripts/layers.toml may list, per crate and folder, the siblings in layers, top
    first; a sibling may import siblings in its own or lower layers only. Unlisted siblings,
    folders and crates are only cycle-checked. See that file for the format.

Two more rules run when scripts/layers.toml has their tables (see that file):

  * [door]: in every .rs file of the workspace's other crates (src, tests, examples, benches:
    every file under the crate's folder) and of the extra folders it names, no use of the
    names (`Store`, as a whole word) or accessor calls (`.store()`, `.connection()`, without
    arguments) that reach beneath the engine. Comments and string literals are not code; test code is.
  * [sql]: in the named crate's src, outside the allowed folders (core: src/db), no SQL string
    literal (an uppercase SQL keyword in SQL context: `SELECT .. FROM`, `INSERT INTO`,
    `UPDATE t SET`, `DELETE FROM`, `CREATE TABLE`, `PRAGMA name`, `ATTACH x AS` ...), no
    `include_str!` of a .sql file, and no call of the statement methods (`.prepare(`,
    `.query_row(`, `.execute(` ...). Items under #[cfg(test)] are left out unless configured.

Each finding is reported as file:line.

Run:  python3 scripts/check-layers.py [--crate NAME] [--verbose] [--root DIR] [--config FILE]
Quiet on success apart from one summary line; otherwise one line per problem and exit status 1
(2 for a usage or config-file error). Tests: python3 -m unittest discover -s scripts/tests
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
import tomllib
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

ModPath = tuple[str, ...]  # a module path below the crate root; () is the root itself

PATH_START = {"crate", "$crate", "super", "self"}


# ---------------------------------------------------------------------------------------------
# Lexing: blank out comments and literals, keeping every offset (and so every line) in place.


def strip_code(src: str, literals: list[tuple[int, int, int]] | None = None) -> str:
    """Returns src with comments and the contents of string/char literals replaced by spaces.

    With `literals`, appends (mark, start, end) for every string literal (plain, byte, C or
    raw): src[start:end] is its contents, and src[mark] is a character of it that stays in the
    stripped code (its opening quote, or the `r` / `br` / `cr` of a raw string), by which a
    caller can tell whether the literal lies in code blanked later (test items)."""
    out = list(src)
    n = len(src)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and src.startswith("/*", i):
            # Rust block comments nest.
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            if literals is not None:
                literals.append((i, i + 1, min(j, n)))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}', '"') or else a lifetime / loop label ('a).
            if i + 1 < n and src[i + 1] == "\\":
                j = i + 3
                while j < n and src[j] != "'" and src[j] != "\n":
                    j += 1
                blank(i + 1, j)
                i = j + 1
            elif i + 2 < n and src[i + 2] == "'" and src[i + 1] != "\n":
                blank(i + 1, i + 2)
                i += 3
            else:
                i += 1
        elif c.isalpha() or c == "_":
            # Whole identifiers are skipped so a prefix letter is seen only at a word start:
            # r"..", r#".."#, br"..", cr".." are raw strings; r#ident is a raw identifier.
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            if src[i:j] in ("r", "br", "cr") and j < n and src[j] in '#"':
                k = j
                while k < n and src[k] == "#":
                    k += 1
                if k < n and src[k] == '"':
                    close = '"' + "#" * (k - j)
                    end = src.find(close, k + 1)
                    body_end = n if end < 0 else end
                    end = n if end < 0 else end + len(close)
                    blank(j, end)
                    if literals is not None:
                        literals.append((i, k + 1, body_end))
                    j = end
            i = j
        else:
            i += 1
    return "".join(out)


def match_close(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index just past the bracket closing the one at text[start] (len(text) if unclosed)."""
    depth = 0
    for k in range(start, len(text)):
        if text[k] == open_ch:
            depth += 1
        elif text[k] == close_ch:
            depth -= 1
            if depth == 0:
                return k + 1
    return len(text)


CFG_ATTR = re.compile(r"#\s*\[\s*cfg\s*\(")
ATTR = re.compile(r"\s*#\s*\[")
FILE_TEST_ONLY = re.compile(r"#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")


def is_test_only(pred: str) -> bool:
    """Whether a cfg predicate holds only in test builds: `test` or `all(.., test, ..)`."""
    pred = re.sub(r"\s+", "", pred)
    if pred == "test":
        return True
    if pred.startswith("all(") and pred.endswith(")"):
        parts, depth, cur = [], 0, ""
        for ch in pred[4:-1]:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += (ch == "(") - (ch == ")")
            cur += ch
        parts.append(cur)
        return "test" in parts
    return False


def blank_test_items(code: str) -> str:
    """Blanks every item marked #[cfg(test)]: they are not part of the built crate."""
    out = list(code)
    for m in CFG_ATTR.finditer(code):
        if out[m.start()] == " ":  # inside an item already blanked
            continue
        paren = m.end() - 1
        pred_end = match_close(code, paren, "(", ")")
        if not is_test_only(code[paren + 1 : pred_end - 1]):
            continue
        k = code.find("]", pred_end)
        if k < 0:
            continue
        k += 1
        # Further attributes on the same item.
        while (a := ATTR.match(code, k)) is not None:
            k = match_close(code, a.end() - 1, "[", "]")
        # The item ends at its first top-level `;` or with the block its first `{` opens.
        depth, end = 0, len(code)
        for j in range(k, len(code)):
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                end = j + 1
                break
            elif ch == "{" and depth == 0:
                end = match_close(code, j, "{", "}")
                break
        for j in range(m.start(), end):
            if out[j] != "\n":
                out[j] = " "
    return "".join(out)


TOKEN = re.compile(r"\$crate|r#[^\W\d]\w*|[^\W\d]\w*|::|\S")


@dataclass
class SourceFile:
    """One .rs file, lexed: what it declares and what it references."""

    path: Path
    code: str  # stripped, with test items blanked
    test_only: bool
    inline_mods: list[tuple[int, int, str]]  # (body start, body end, name)
    mod_decls: list[tuple[ModPath, str, int, str | None]]  # (inline stack, name, offset, #[path])
    refs: list[tuple[int, ModPath, ModPath]]  # (line, inline stack, segments as written)

    @classmethod
    def parse(cls, path: Path) -> "SourceFile":
        raw = path.read_text(encoding="utf-8", errors="replace")
        stripped = strip_code(raw)
        test_only = FILE_TEST_ONLY.search(stripped) is not None
        code = blank_test_items(stripped)
        sf = cls(path, code, test_only, [], [], [])
        newlines = [i for i, ch in enumerate(code) if ch == "\n"]

        def line_of(offset: int) -> int:
            return bisect_right(newlines, offset - 1) + 1

        for m in re.finditer(r"(?<![#\w])mod\s+(?:r#)?(\w+)\s*\{", code):
            sf.inline_mods.append((m.end() - 1, match_close(code, m.end() - 1, "{", "}"), m.group(1)))
        for m in re.finditer(r"(?<![#\w])mod\s+(?:r#)?(\w+)\s*;", code):
            # A #[path = ".."] right before the declaration; the literal was blanked, so read
            # it from the raw text at the same offsets.
            attr = None
            before = code[: m.start()]
            pm = re.search(r'#\s*\[\s*path\s*=\s*"([^"]*)"\s*\]\s*(?:pub(?:\s*\([^)]*\))?\s*)?$', before)
            if pm:
                attr = raw[pm.start(1) : pm.end(1)]
            sf.mod_decls.append((sf.stack_at(m.start()), m.group(1), m.start(), attr))

        toks = [(t.group(), t.start()) for t in TOKEN.finditer(code)]
        sf._collect_refs(toks, line_of)
        return sf

    def stack_at(self, offset: int) -> ModPath:
        """Names of the inline `mod x { }` blocks enclosing offset, outermost first."""
        enclosing = [(s, name) for s, e, name in self.inline_mods if s < offset < e]
        return tuple(name for _, name in sorted(enclosing))

    def _collect_refs(self, toks: list[tuple[str, int]], line_of) -> None:
        i, n = 0, len(toks)

        def text(k: int) -> str:
            return toks[k][0] if 0 <= k < n else ""

        def ident(k: int) -> bool:
            t = text(k)
            return bool(t) and (t[0].isalpha() or t[0] in "_$")

        def emit(k: int, segs: list[str]) -> None:
            segs = [s[2:] if s.startswith("r#") else s for s in segs]
            if segs and segs[-1] == "self":  # `use a::{self}` names a itself
                segs = segs[:-1]
            if segs and segs[0] in PATH_START:
                off = toks[k][1]
                self.refs.append((line_of(off), self.stack_at(off), tuple(segs)))

        def use_tree(k: int, prefix: list[str]) -> int:
            """Parses one use tree from token k; returns the index after it."""
            if text(k) == "::":  # `use ::extern_crate::..`
                prefix, k = ["::"], k + 1
            segs, first = list(prefix), k
            while ident(k):
                segs.append(text(k))
                if text(k + 1) == "::":
                    k += 2
                else:
                    k += 1
                    if text(k) == "as":
                        k += 2
                    emit(first, segs)
                    return k
            if text(k) == "*":
                emit(first, segs)
                return k + 1
            if text(k) == "{":
                k += 1
                while k < n and text(k) != "}":
                    if text(k) == ",":
                        k += 1
                        continue
                    nk = use_tree(k, segs)
                    k = nk if nk > k else k + 1
                return k + 1
            return k

        while i < n:
            t = text(i)
            if t == "use" and text(i + 1) != "<":  # `+ use<'a>` is precise capturing
                i = use_tree(i + 1, [])
                continue
            if t in PATH_START and text(i + 1) == "::" and text(i - 1) != "::":
                # `pub(in crate::a)` restricts visibility; it does not depend on a.
                if text(i - 1) == "in" and text(i - 2) == "(":
                    i += 1
                    continue
                segs, k = [t], i + 1
                while text(k) == "::" and ident(k + 1):
                    segs.append(text(k + 1))
                    k += 2
                emit(i, segs)
                i = k
                continue
            i += 1


# ---------------------------------------------------------------------------------------------
# Crates, targets and their module trees.


@dataclass
class Module:
    path: ModPath
    file: Path
    children_dir: Path  # where its `mod x;` files live


@dataclass
class Ref:
    src: ModPath
    dst: ModPath
    file: Path
    line: int


@dataclass
class Target:
    crate: "Crate"
    kind: str  # "lib" or "bin NAME"
    modules: dict[ModPath, Module] = field(default_factory=dict)
    aliases: dict[ModPath, ModPath] = field(default_factory=dict)  # inline mod path -> its file's
    refs: list[Ref] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.crate.name if self.kind == "lib" else f"{self.crate.name}[{self.kind}]"

    def resolve(self, segs: ModPath) -> ModPath | None:
        """The module a path names: its longest prefix that is a module (inline ones map to
        their file's)."""
        for k in range(len(segs), -1, -1):
            if segs[:k] in self.aliases:
                return self.aliases[segs[:k]]
        return None


@dataclass
class Crate:
    name: str  # the member's folder name
    package: str
    dir: Path
    targets: list[Target] = field(default_factory=list)


def workspace_members(root: Path) -> list[Path]:
    ws = tomllib.loads((root / "Cargo.toml").read_text()).get("workspace", {})
    excluded = {(root / e).resolve() for e in ws.get("exclude", [])}
    dirs: list[Path] = []
    for pattern in ws.get("members", []):
        for d in sorted(glob.glob(str(root / pattern))):
            p = Path(d).resolve()
            if (p / "Cargo.toml").is_file() and p not in excluded and p not in dirs:
                dirs.append(p)
    return dirs


def crate_roots(cdir: Path) -> list[tuple[str, Path]]:
    manifest = tomllib.loads((cdir / "Cargo.toml").read_text())
    roots: dict[Path, str] = {}
    lib = cdir / manifest.get("lib", {}).get("path", "src/lib.rs")
    if lib.is_file():
        roots[lib.resolve()] = "lib"
    bins = [cdir / "src/main.rs", *sorted((cdir / "src/bin").glob("*.rs")),
            *sorted((cdir / "src/bin").glob("*/main.rs"))]
    bins += [cdir / b["path"] for b in manifest.get("bin", []) if "path" in b]
    for b in bins:
        if b.is_file() and b.resolve() not in roots:
            name = b.parent.name if b.name == "main.rs" and b.parent.name != "src" else b.stem
            if b == cdir / "src/main.rs":
                name = manifest.get("package", {}).get("name", cdir.name)
            roots[b.resolve()] = f"bin {name}"
    return [(kind, p) for p, kind in roots.items()]


def load_crate(cdir: Path, cache: dict[Path, SourceFile]) -> Crate:
    manifest = tomllib.loads((cdir / "Cargo.toml").read_text())
    crate = Crate(cdir.name, manifest.get("package", {}).get("name", cdir.name), cdir)
    for kind, root_file in crate_roots(cdir):
        crate.targets.append(build_target(crate, kind, root_file, cache))
    return crate


def build_target(crate: Crate, kind: str, root_file: Path, cache: dict[Path, SourceFile]) -> Target:
    t = Target(crate, kind)
    todo = [Module((), root_file, root_file.parent)]
    while todo:
        mod = todo.pop()
        if mod.file not in cache:
            cache[mod.file] = SourceFile.parse(mod.file)
        sf = cache[mod.file]
        if sf.test_only:
            continue
        t.modules[mod.path] = mod
        t.aliases[mod.path] = mod.path
        for start, _, _ in sf.inline_mods:
            stack = sf.stack_at(start + 1)
            t.aliases.setdefault(mod.path + stack, mod.path)
        for stack, name, _, attr in sf.mod_decls:
            base = mod.children_dir.joinpath(*stack)
            if attr is not None:
                cands = [(mod.file.parent if not stack else base) / attr]
            else:
                cands = [base / f"{name}.rs", base / name / "mod.rs"]
            f = next((c for c in cands if c.is_file()), None)
            if f is None:
                t.missing.append(f"{rel(mod.file)}: no file for `mod {name};`")
                continue
            f = f.resolve()
            cdir = f.parent if f.name == "mod.rs" else f.parent / f.stem
            todo.append(Module(mod.path + stack + (name,), f, cdir))
    for mod in t.modules.values():
        for line, stack, segs in cache[mod.file].refs:
            here = list(mod.path + stack)
            head, rest = segs[0], list(segs[1:])
            if head in ("crate", "$crate"):
                here = []
            elif head == "super":
                rest.insert(0, "super")
            while rest and rest[0] in ("super", "self"):
                if rest.pop(0) == "super":
                    if not here:
                        break  # `super` above the root: not a path we understand
                    here.pop()
            dst = t.resolve(tuple(here + rest))
            if dst is not None and dst != mod.path:
                t.refs.append(Ref(mod.path, dst, mod.file, line))
    return t


ROOT_DIR = Path.cwd()


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT_DIR))
    except ValueError:
        return str(p)


def mod_label(path: ModPath) -> str:
    return "::".join(("crate",) + path)


# ---------------------------------------------------------------------------------------------
# Graph checks.


def sibling_graphs(t: Target) -> dict[ModPath, dict[tuple[str, str], list[Ref]]]:
    """Per folder (a module with children), its sibling edges and the references behind each."""
    graphs: dict[ModPath, dict[tuple[str, str], list[Ref]]] = {}
    for path in t.modules:
        if path:
            graphs.setdefault(path[:-1], {})
    for r in t.refs:
        k = 0
        while k < min(len(r.src), len(r.dst)) and r.src[k] == r.dst[k]:
            k += 1
        if k < len(r.src) and k < len(r.dst):  # neither is the other's ancestor
            graphs.setdefault(r.src[:k], {}).setdefault((r.src[k], r.dst[k]), []).append(r)
    return graphs


def strongly_connected(nodes: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components of more than one node."""
    succ: dict[str, list[str]] = {v: [] for v in nodes}
    for a, b in sorted(edges):
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(comps)


def shortest_cycle(start: str, comp: set[str], edges: set[tuple[str, str]]) -> list[str]:
    """A shortest cycle through start inside one component (breadth-first)."""
    succ = {v: sorted(b for a, b in edges if a == v and b in comp) for v in comp}
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in succ[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


def where(refs: list[Ref]) -> str:
    first = min(refs, key=lambda r: (str(r.file), r.line))
    more = f" (+{len(refs) - 1} more)" if len(refs) > 1 else ""
    return f"{rel(first.file)}:{first.line}{more}"


# ---------------------------------------------------------------------------------------------
# Config.


class ConfigError(Exception):
    pass


@dataclass
class CrateRules:
    layers: dict[ModPath, list[list[str]]]  # folder -> layers, top first
    forbid_parent_imports: bool


def folder_key(key: str) -> ModPath:
    key = key.strip().replace("/", "::")
    if key in ("root", "crate", ""):
        return ()
    parts = [p for p in key.split("::") if p]
    if parts and parts[0] == "crate":
        parts = parts[1:]
    return tuple(parts)


def load_config(path: Path | None) -> tuple[dict[str, CrateRules], bool]:
    """Per-crate rules, and whether parent imports are forbidden for crates not listed."""
    if path is None or not path.is_file():
        return {}, False
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    default_forbid = data.get("forbid_parent_imports", False)
    rules: dict[str, CrateRules] = {}
    for crate, table in data.items():
        if crate == "forbid_parent_imports":
            if not isinstance(table, bool):
                raise ConfigError(f"{path}: forbid_parent_imports must be true or false")
            continue
        if crate in RULE_TABLES:
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{crate}] must be a table")
        cr = CrateRules({}, default_forbid)
        for key, value in table.items():
            if key == "forbid_parent_imports":
                if not isinstance(value, bool):
                    raise ConfigError(f"{path}: [{crate}] forbid_parent_imports must be true or false")
                cr.forbid_parent_imports = value
                continue
            if not isinstance(value, list):
                raise ConfigError(f"{path}: [{crate}] {key} must be a list of layers")
            layers: list[list[str]] = []
            for item in value:
                layer = item if isinstance(item, list) else [item]
                if not all(isinstance(x, str) for x in layer):
                    raise ConfigError(f"{path}: [{crate}] {key}: layers are names or lists of names")
                layers.append(layer)
            names = [x for layer in layers for x in layer]
            if len(names) != len(set(names)):
                raise ConfigError(f"{path}: [{crate}] {key}: a module is listed twice")
            cr.layers[folder_key(key)] = layers
        rules[crate] = cr
    return rules, default_forbid


# ---------------------------------------------------------------------------------------------
# The door and SQL rules.

RULE_TABLES = ("door", "sql")


@dataclass
class DoorRule:
    """[door]: outside `crate`, no use of `names` and no argument-less calls of `methods`."""

    crate: str
    names: list[str]
    methods: list[str]
    also: list[str]  # folders outside the workspace's crates to check too


@dataclass
class SqlRule:
    """[sql]: in `crate`'s src, outside `allowed`, no SQL literal and no call of `calls`."""

    crate: str
    allowed: list[str]  # folders relative to the crate
    calls: list[str]
    test_items: bool  # whether #[cfg(test)] items are checked too


def _strings(path: Path, table: dict, key: str, default: list[str]) -> list[str]:
    value = table.get(key, default)
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ConfigError(f"{path}: {key} must be a list of names")
    return value


def load_rules(path: Path | None) -> tuple[DoorRule | None, SqlRule | None]:
    """The [door] and [sql] tables of the config file, if it has them."""
    if path is None or not path.is_file():
        return None, None
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    door = sql = None
    for name in RULE_TABLES:
        table = data.get(name)
        if table is None:
            continue
        if not isinstance(table, dict) or not isinstance(table.get("crate"), str):
            raise ConfigError(f"{path}: [{name}] must be a table with crate = \"NAME\"")
        known = {
            "door": {"crate", "names", "methods", "also"},
            "sql": {"crate", "allowed", "calls", "test_items"},
        }[name]
        for key in table:
            if key not in known:
                raise ConfigError(f"{path}: [{name}] has no setting `{key}`")
        if name == "door":
            door = DoorRule(
                table["crate"],
                _strings(path, table, "names", []),
                _strings(path, table, "methods", []),
                _strings(path, table, "also", []),
            )
        else:
            test_items = table.get("test_items", False)
            if not isinstance(test_items, bool):
                raise ConfigError(f"{path}: [sql] test_items must be true or false")
            sql = SqlRule(
                table["crate"],
                _strings(path, table, "allowed", []),
                _strings(path, table, "calls", []),
                test_items,
            )
    return door, sql


def rust_files(folder: Path) -> list[Path]:
    """Every .rs file under folder, build output (`target`) left out."""
    return sorted(f for f in folder.rglob("*.rs") if "target" not in f.relative_to(folder).parts[:-1])


def line_starts(text: str) -> list[int]:
    return [i for i, ch in enumerate(text) if ch == "\n"]


def line_at(newlines: list[int], offset: int) -> int:
    return bisect_right(newlines, offset - 1) + 1


def check_door(rule: DoorRule, crates: list["Crate"], extra: list[Path], rep: "Report") -> None:
    """Reports every use of the door's forbidden names and methods in `crates` and `extra`."""
    pats = []
    for name in rule.names:
        pats.append((re.compile(rf"(?<![\w$]){re.escape(name)}(?!\w)"), f"`{name}`"))
    for m in rule.methods:
        # Accessors take no arguments: `flag.store(true, ..)` on an atomic is not one.
        pats.append((re.compile(rf"\.\s*{re.escape(m)}\s*\(\s*\)"), f"`.{m}()`"))
    files = [f for c in crates for f in rust_files(c.dir)] + [f for d in extra for f in rust_files(d)]
    for f in files:
        code = strip_code(f.read_text(encoding="utf-8", errors="replace"))
        newlines = line_starts(code)
        for pat, what in pats:
            for m in pat.finditer(code):
                rep.door += 1
                rep.problems.append(
                    f"door: {rel(f)}:{line_at(newlines, m.start())}: {what} reaches beneath "
                    f"`Engine`; outside {rule.crate} everything goes through the engine"
                )


# SQL as it is written in a string literal: an uppercase keyword in the context only SQL gives
# it, so that prose ("select a file", "Update the index") is not taken for SQL.
SQL = re.compile(
    r"""
      \bSELECT\s+(?:DISTINCT\s+)?(?:[\w.]+\s*\(|\*|\d|\?|:\w|[\w.]+\s*,)
    | \bSELECT\s[^;]*?\bFROM\b
    | \bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b
    | \bREPLACE\s+INTO\b
    | \bUPDATE\s+(?:OR\s+[A-Z]+\s+)?\S+\s+SET\b
    | \bDELETE\s+FROM\b
    | \bCREATE\s+(?:(?:TEMP|TEMPORARY|UNIQUE|VIRTUAL)\s+)*(?:TABLE|INDEX|VIEW|TRIGGER)\b
    | \bDROP\s+(?:TABLE|INDEX|VIEW|TRIGGER)\b
    | \bALTER\s+TABLE\b
    | \bPRAGMA\s+(?:\w+\.)?\w+(?=\s*(?:=|\(|;|\Z))
    | \bATTACH\s+(?:DATABASE\s+)?\S+\s+AS\b
    """,
    re.X,
)
INCLUDE_STR = re.compile(r"include_str\s*!\s*\(\s*$")


def check_sql(rule: SqlRule, crate: "Crate", rep: "Report") -> None:
    """Reports SQL literals and statement calls in `crate`'s src outside the allowed folders."""
    allowed = []
    for a in rule.allowed:
        d = (crate.dir / a).resolve()
        if not d.is_dir():
            rep.problems.append(f"config: [sql] allowed `{a}` is not a folder of {crate.name}")
        allowed.append(d)
    calls = re.compile(
        r"(?:\.|::)\s*(" + "|".join(re.escape(c) for c in rule.calls) + r")\s*(?:::\s*<[^>]*>\s*)?\("
    ) if rule.calls else None
    outside = " or ".join(f"{crate.name}/{a}" for a in rule.allowed)
    outside = f" outside {outside}" if outside else ""

    def report(f: Path, line: int, what: str) -> None:
        rep.sql += 1
        rep.problems.append(f"sql: {rel(f)}:{line}: {what}{outside}")

    for f in rust_files(crate.dir / "src"):
        if any(f.resolve().is_relative_to(d) for d in allowed):
            continue
        raw = f.read_text(encoding="utf-8", errors="replace")
        literals: list[tuple[int, int, int]] = []
        stripped = strip_code(raw, literals)
        if not rule.test_items and FILE_TEST_ONLY.search(stripped):
            continue
        code = stripped if rule.test_items else blank_test_items(stripped)
        newlines = line_starts(raw)
        found: list[tuple[int, str]] = []
        if calls is not None:
            for m in calls.finditer(code):
                found.append((m.start(1), f"`.{m.group(1)}(` runs SQL"))
        for mark, start, end in literals:
            if code[mark] == " ":  # in a test item left out
                continue
            body = raw[start:end]
            m = SQL.search(body)
            if m is not None:
                snippet = " ".join(m.group(0).split())[:40]
                found.append((start + m.start(), f"SQL string literal (`{snippet}`)"))
            elif body.endswith(".sql") and INCLUDE_STR.search(code, 0, mark):
                found.append((start, f"SQL file included (`{body}`)"))
        for offset, what in sorted(found):
            report(f, line_at(newlines, offset), what)


# ---------------------------------------------------------------------------------------------
# Driver.


@dataclass
class Report:
    crates: int = 0
    modules: int = 0
    cycles: int = 0
    upward: int = 0
    door: int = 0
    sql: int = 0
    rules: list[str] = field(default_factory=list)  # the rules beyond layers that ran
    problems: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)


def check_target(t: Target, rules: CrateRules, rep: Report) -> None:
    if len(t.modules) == 1:
        # Only its root file (a thin main.rs over the crate's library): no module to layer, and
        # the crate's layer table is the library's.
        return
    graphs = sibling_graphs(t)
    layers = rules.layers
    for folder in sorted(graphs):
        edges = graphs[folder]
        where_label = f"{t.label} {mod_label(folder)}"
        names = {p[len(folder)] for p in t.modules if len(p) > len(folder) and p[: len(folder)] == folder}
        names = sorted(names | {n for e in edges for n in e})
        edge_set = set(edges)
        for comp in strongly_connected(names, edge_set):
            rep.cycles += 1
            cyc = shortest_cycle(comp[0], set(comp), edge_set)
            extra = f" (component: {', '.join(comp)})" if len(set(cyc)) < len(comp) else ""
            rep.problems.append(f"cycle in {where_label}: {' -> '.join(cyc)}{extra}")
            for a, b in sorted(e for e in edge_set if e[0] in comp and e[1] in comp):
                rep.problems.append(f"    {a} -> {b} at {where(edges[(a, b)])}")
        if folder in layers:
            rank = {name: i for i, layer in enumerate(layers[folder]) for name in layer}
            for name in rank:
                if name not in names:
                    rep.problems.append(
                        f"config: [{t.crate.name}] {mod_label(folder)} lists `{name}`, which is not a module there"
                    )
            for (a, b), refs in sorted(edges.items()):
                if a in rank and b in rank and rank[b] < rank[a]:
                    rep.upward += 1
                    rep.problems.append(
                        f"upward import in {where_label}: {a} (layer {rank[a] + 1}) -> {b} "
                        f"(layer {rank[b] + 1}) at {where(refs)}"
                    )
        rep.verbose.append(f"{where_label}: {len(names)} modules")
        for n in names:
            outs = sorted(b for a, b in edges if a == n)
            rep.verbose.append(f"    {n}" + (f" -> {', '.join(outs)}" if outs else ""))
    for folder in layers:
        if folder and folder not in graphs:
            rep.problems.append(f"config: [{t.crate.name}] {mod_label(folder)} is not a module folder")
    if rules.forbid_parent_imports:
        # A child reaching into an ancestor's own items (`use super::Thing`) depends upward.
        seen: dict[tuple[ModPath, ModPath], list[Ref]] = {}
        for r in t.refs:
            if len(r.dst) < len(r.src) and r.src[: len(r.dst)] == r.dst:
                seen.setdefault((r.src, r.dst), []).append(r)
        for (src, dst), refs in sorted(seen.items()):
            rep.upward += 1
            rep.problems.append(
                f"upward import in {t.label}: {mod_label(src)} uses items of its ancestor "
                f"{mod_label(dst)} at {where(refs)}"
            )


def run(root: Path, config: Path | None, only: str | None) -> Report:
    global ROOT_DIR
    ROOT_DIR = root
    rules, default_forbid = load_config(config)
    rep = Report()
    cache: dict[Path, SourceFile] = {}
    all_crates = [load_crate(d, cache) for d in workspace_members(root)]
    crates = all_crates
    if only is not None:
        crates = [c for c in crates if only in (c.name, c.package, rel(c.dir))]
        if not crates:
            raise ConfigError(f"no workspace crate named {only}")
    known = {c.name for c in crates} | {c.package for c in crates}
    if only is None:
        for name in rules:
            if name not in known:
                rep.problems.append(f"config: [{name}] is not a workspace crate")
    door, sql = load_rules(config)

    def named(name: str, table: str) -> "Crate | None":
        found = next((c for c in all_crates if name in (c.name, c.package)), None)
        if found is None:
            rep.problems.append(f"config: [{table}] crate `{name}` is not a workspace crate")
        return found

    if door is not None:
        rep.rules.append("door")
        inside = named(door.crate, "door")
        extra = []
        for a in door.also if only is None else []:
            d = root / a
            if not d.is_dir():
                rep.problems.append(f"config: [door] also `{a}` is not a folder")
            else:
                extra.append(d)
        if inside is not None:
            check_door(door, [c for c in crates if c.dir != inside.dir], extra, rep)
    if sql is not None:
        rep.rules.append("sql")
        home = named(sql.crate, "sql")
        if home is not None and any(c.dir == home.dir for c in crates):
            check_sql(sql, home, rep)
    for c in crates:
        rep.crates += 1
        cr = rules.get(c.name) or rules.get(c.package) or CrateRules({}, default_forbid)
        for t in c.targets:
            rep.modules += len(t.modules)
            check_target(t, cr, rep)
            rep.verbose.extend(f"note: {m}" for m in t.missing)
        reached = {m.file for t in c.targets for m in t.modules.values()}
        for f in sorted((c.dir / "src").rglob("*.rs")):
            if f.resolve() not in reached and f.resolve() not in cache:
                rep.verbose.append(f"note: {rel(f)} is not part of any target's module tree")
    return rep


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crate", help="check only this crate (folder or package name)")
    ap.add_argument("--verbose", action="store_true", help="print the sibling graph of every folder")
    ap.add_argument("--root", type=Path, default=here.parent, help="the workspace root")
    ap.add_argument("--config", type=Path, help="layers file (default: ROOT/scripts/layers.toml)")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    config = args.config if args.config is not None else root / "scripts" / "layers.toml"
    try:
        rep = run(root, config, args.crate)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as e:
        print(f"layers: {e}", file=sys.stderr)
        return 2
    if args.verbose:
        print("\n".join(rep.verbose))
    for p in rep.problems:
        print(p)
    rules = ""
    if "door" in rep.rules:
        rules += f", {rep.door} door crossings"
    if "sql" in rep.rules:
        rules += f", {rep.sql} SQL outside its folder"
    print(
        f"layers: {rep.crates} crates, {rep.modules} modules, {rep.cycles} cycles, "
        f"{rep.upward} upward imports{rules}"
    )
    return 1 if rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
