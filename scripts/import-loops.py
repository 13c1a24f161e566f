#!/usr/bin/env python3
"""List import loops between files of a crate: `scripts/import-loops.py src server/src`.

A file imports another when it names `crate::a::b` (or `super::x`, resolved from its own module)
in code; the path is resolved to the deepest file that exists (`a/b.rs`, `a/b/mod.rs`, `a.rs`,
`a/mod.rs`). Module declarations (`mod x;`) are not imports. Prints each group of files that
import each other (a strongly connected component of more than one file) and exits 1 if any.
"""
import os, re, sys

def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel

def file_of(root, parts):
    for n in range(len(parts), 0, -1):
        base = os.path.join(root, *parts[:n])
        for cand in (base + ".rs", os.path.join(base, "mod.rs")):
            if os.path.isfile(cand):
                return cand
    return None

def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)

def graph(root):
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".rs")]
    g = {}
    for f in files:
        text = strip(open(f, encoding="utf-8").read())
        # Tests inside a file may import anything of it; they are not part of the layering.
        text = text.split("#[cfg(test)]")[0]
        here = module_of(root, f)
        is_mod = os.path.basename(f) in ("mod.rs", "lib.rs", "main.rs")
        deps = set()
        for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
            parts = m.group(2).split("::")[1:]
            if m.group(1) == "super":
                base = here if is_mod else here[:-1]
                parts = base[:-1] + parts
                while parts and parts[0] == "super":
                    parts = parts[1:]
            # `use x::{a, b}` lists: the prefix names the module.
            t = file_of(root, parts)
            if t and os.path.abspath(t) != os.path.abspath(f):
                deps.add(t)
        g[f] = deps
    return g

def sccs(g):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(g):
        if v not in index:
            visit(v)
    return out

found = 0
for root in sys.argv[1:] or ["src"]:
    for comp in sccs(graph(root)):
        found += 1
        print(f"{root}: {len(comp)} files import each other: " + ", ".join(os.path.relpath(c, root) for c in comp))
print(f"{found} import loop(s)")
sys.exit(1 if found else 0)
