#!/usr/bin/env python3
"""Prints each crate's module graph (which module uses which, from `crate::`, `super::` and
`self::` paths in its source) and any import cycles, for the crates under crates/.

Usage: scripts/module_graph.py [--edges] [crate-dir ...]
A node is a top-level module with its submodules (`session`), and for cycles inside one, a
module file (`session/lifecycle`); `mod tests` blocks and `#[cfg(test)]`
files (`tests.rs`, `*_tests.rs`) are left out: tests may reach anywhere. Exits 1 if a cycle is
found, so a check can run it.
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\};", re.S)


def modules(src):
    """{module path: file} for every .rs file under src (lib.rs/main.rs is the root "")."""
    found = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].replace(os.sep, "/")
            if rel in ("lib", "main") or rel.startswith("bin/"):
                rel = ""
            elif rel.endswith("/mod"):
                rel = rel[: -len("/mod")]
            if rel == "tests" or rel.endswith("/tests") or rel.endswith("_tests"):
                continue
            found.setdefault(rel, path)
    return found


def strip_tests(text):
    """The text without `#[cfg(test)] mod tests { ... }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def resolve(base, segments, known):
    """The longest known module that `base::segments` names (None: outside the crate)."""
    parts = [p for p in base.split("/") if p] + segments
    for n in range(len(parts), -1, -1):
        cand = "/".join(parts[:n])
        if cand in known:
            return cand
    return None


def edges(known):
    graph = {m: set() for m in known}
    for mod, path in known.items():
        with open(path, encoding="utf-8") as f:
            text = strip_tests(f.read())
        parent = "/".join(mod.split("/")[:-1])
        # A file `a/b.rs` is module a::b; `super` is a; `self` is a::b.
        if os.path.basename(path) == "mod.rs":
            parent = "/".join(mod.split("/")[:-1])
        refs = []
        for m in USE_GROUP.finditer(text):
            for item in re.split(r"[,\s]+", m.group(2)):
                item = item.strip().split("::")
                if item and item[0] and item[0] != "{":
                    refs.append((m.group(1), [s for s in item if s and s != "self" and s != "*"]))
        for m in PATH.finditer(text):
            refs.append((m.group(1), [s for s in m.group(2).split("::") if s]))
        for kind, segs in refs:
            base = {"crate": "", "super": parent, "self": mod}[kind]
            while segs and segs[0] == "super":
                base = "/".join(base.split("/")[:-1])
                segs = segs[1:]
            target = resolve(base, segs, known)
            if target is not None and target != mod and not mod.startswith(target + "/") and target != "":
                graph[mod].add(target)
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def collapsed(graph, depth):
    """The graph with every module cut to its first `depth` path segments."""
    cut = lambda m: "/".join(m.split("/")[:depth])
    out = {}
    for m, targets in graph.items():
        out.setdefault(cut(m), set())
        for t in targets:
            if cut(t) != cut(m):
                out[cut(m)].add(cut(t))
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_edges = "--edges" in sys.argv
    crates = args or sorted(
        os.path.join("crates", d) for d in os.listdir("crates") if os.path.isdir(os.path.join("crates", d, "src"))
    )
    found_any = False
    for crate in crates:
        known = modules(os.path.join(crate, "src"))
        full = edges(known)
        # Top-level modules first (a module with its submodules), then every file.
        found = cycles(collapsed(full, 1)) + [
            c for c in cycles(full) if len({m.split("/")[0] for m in c}) == 1
        ]
        graph = full
        found_any |= bool(found)
        n_edges = sum(len(v) for v in graph.values())
        print(f"{crate}: {len(known)} modules, {n_edges} edges, {len(found)} cycles")
        for comp in found:
            print("  cycle: " + " <-> ".join(comp))
        if show_edges:
            for m in sorted(graph):
                if graph[m]:
                    print(f"  {m or '(root)'} -> {', '.join(sorted(graph[m]))}")
    sys.exit(1 if found_any else 0)


if __name__ == "__main__":
    main()
