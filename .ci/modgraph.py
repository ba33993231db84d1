#!/usr/bin/env python3
"""The dependency rule of ARCHITECTURE.md, checked.

    python3 .ci/modgraph.py [SRC]          prints every violation; silent if none
    python3 .ci/modgraph.py --edges [SRC]  prints the graph of top-level modules

A top-level module is a file `src/x.rs` or a directory `src/x/`. Module `a`
depends on `b` when a file under `a` names `crate::b` (in a path or in a `use`
tree), or names an item the crate root re-exports from `b`. The rules:

  * the graph of top-level modules has no cycle;
  * `src/lib.rs` holds module declarations, re-exports, attributes and docs
    only: no function, type, constant, static, impl or macro of its own.
"""
import os
import re
import sys


def strip_comments_and_strings(text):
    # Doc comments and line comments, block comments, then string literals
    # (so that "crate::x" inside a message is not an edge).
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def top_module(src, path):
    parts = os.path.relpath(path, src).split(os.sep)
    if parts == ["lib.rs"]:
        return None
    head = parts[0]
    return head[:-3] if head.endswith(".rs") else head


def use_tree_heads(tree):
    """The first segment of every path in a `use crate::{...}` tree."""
    heads, depth, token = [], 0, ""
    for ch in tree + ",":
        if ch == "{":
            if depth == 0 and token.strip():
                heads.append(token.strip().split("::")[0])
            depth += 1
            token = ""
        elif ch == "}":
            depth -= 1
            token = ""
        elif ch == "," and depth == 0:
            t = token.strip()
            if t:
                heads.append(re.split(r"::|\s", t)[0])
            token = ""
        elif depth == 0:
            token += ch
    return [h for h in heads if h and h != "self"]


def main(argv):
    print_edges = "--edges" in argv
    args = [a for a in argv if not a.startswith("--")]
    src = args[0] if args else "src"

    files = []
    for d, _, names in os.walk(src):
        files += [os.path.join(d, n) for n in names if n.endswith(".rs")]
    modules = {m for m in (top_module(src, f) for f in files) if m}

    lib = strip_comments_and_strings(open(os.path.join(src, "lib.rs")).read())
    problems = []

    # lib.rs: only `mod`, `pub use`, attributes.
    extra = []
    body = re.sub(r"#!?\[[^\]]*(?:\[[^\]]*\][^\]]*)*\]", "", lib)
    for stmt in re.split(r";", body):
        s = " ".join(stmt.split())
        if not s:
            continue
        if re.fullmatch(r"(pub(\([^)]*\))? )?mod \w+", s):
            continue
        if re.fullmatch(r"pub(\([^)]*\))? use .+", s, flags=re.S):
            continue
        extra.append(s)
    if extra:
        problems.append(
            f"lib.rs holds {len(extra)} statement(s) that are not declarations, "
            f"the first: {extra[0][:60]}"
        )

    # Names the root re-exports, and the module each comes from.
    reexported = {}
    for m, tree in re.findall(r"pub use (\w+)::(\{[^;]*\}|[\w:]+(?: as \w+)?)\s*;", lib):
        for name in re.findall(r"(?:as\s+)?(\w+)\s*(?:[,}]|$)", tree.strip("{}") + ","):
            reexported[name] = m

    edges = {m: set() for m in modules}
    for f in files:
        a = top_module(src, f)
        if a is None:
            continue
        text = strip_comments_and_strings(open(f).read())
        refs = re.findall(r"\bcrate::(\w+)", text)
        for tree in re.findall(r"\buse\s+crate::\{(.*?)\};", text, flags=re.S):
            refs += use_tree_heads(tree)
        for r in refs:
            b = r if r in modules else reexported.get(r)
            if b and b != a:
                edges[a].add(b)

    # Cycles: depth-first search with colours; report each back edge's cycle.
    colour = {m: 0 for m in modules}
    stack = []
    cycles = set()

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if colour[n] == 0:
                visit(n)
            elif colour[n] == 1:
                cyc = stack[stack.index(n):]
                i = cyc.index(min(cyc))
                cycles.add(" -> ".join(cyc[i:] + cyc[:i] + [cyc[i]]))
        stack.pop()
        colour[m] = 2

    for m in sorted(modules):
        if colour[m] == 0:
            visit(m)
    problems += ["import cycle: " + c for c in sorted(cycles)]

    if print_edges:
        for m in sorted(modules):
            print(f"{m} -> {', '.join(sorted(edges[m])) or '(leaf)'}")
    else:
        for p in problems:
            print(p)
    return 1 if problems and not print_edges else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
