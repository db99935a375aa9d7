"""Modules over a line count and functions over a line count, per folder: `python tools/code_size.py core app_pages`."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path


def sizes(root: Path, module_lines: int, function_lines: int) -> tuple[list, list, int]:
    """(long modules [(path, lines)], long functions [(path, name, lines)], number of modules) under ``root``."""
    modules, functions, files = [], [], sorted(root.rglob("*.py"))
    for path in files:
        text = path.read_text()
        if len(text.splitlines()) > module_lines:
            modules.append((str(path), len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > function_lines:
                    functions.append((str(path), node.name, n))
    return modules, functions, len(files)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--module-lines", type=int, default=500)
    p.add_argument("--function-lines", type=int, default=75)
    args = p.parse_args()
    for folder in args.folders:
        modules, functions, n = sizes(folder, args.module_lines, args.function_lines)
        print(f"{folder}: {n} modules; {len(modules)} over {args.module_lines} lines; "
              f"{len(functions)} functions over {args.function_lines} lines")
        for path, lines in modules:
            print(f"  module   {path} {lines}")
        for path, name, lines in functions:
            print(f"  function {path}:{name} {lines}")


if __name__ == "__main__":
    main()
