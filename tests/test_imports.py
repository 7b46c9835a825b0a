"""Every `vocdet.*` import in the checkout resolves, including those inside functions, which no other test may reach.

Static (the syntax tree only, in about a second): a module moved or renamed breaks `make sample-weights` or
`make bench` the moment it happens, not when someone next runs them.
"""

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The wheel's package prefixes and the folders they install from (setup.py's ROOTS).
PACKAGES = {"vocdet.pipeline": "pipeline", "vocdet.components": "components"}
SCANNED = ("pipeline", "components", "bench", "tests")


def module_file(module: str) -> str | None:
    """The file defining `module` (a .py or a package's __init__.py), "namespace" for `vocdet`, else None."""
    if module == "vocdet":
        return "namespace"
    for package, folder in PACKAGES.items():
        if module == package or module.startswith(package + "."):
            base = os.path.join(ROOT, folder, *module[len(package):].strip(".").split(".")) if module != package else os.path.join(ROOT, folder)
            for candidate in (base + ".py", os.path.join(base, "__init__.py")):
                if os.path.isfile(candidate):
                    return candidate
    return None


def defined_names(path: str) -> set[str]:
    """Names a module binds at its top level (including inside top-level if/try blocks)."""
    names = set()
    for node in ast.parse(open(path).read()).body:
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(inner.name)
            elif isinstance(inner, (ast.Assign, ast.AnnAssign)):
                targets = inner.targets if isinstance(inner, ast.Assign) else [inner.target]
                names.update(name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name))
            elif isinstance(inner, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in inner.names)
    return names


def unresolved_imports() -> list[str]:
    problems = []
    for top in SCANNED:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for file_name in sorted(name for name in files if name.endswith(".py")):
                path = os.path.join(folder, file_name)
                where = os.path.relpath(path, ROOT)
                for node in ast.walk(ast.parse(open(path).read(), path)):
                    if isinstance(node, ast.Import):
                        problems += [
                            f"{where}:{node.lineno} import {alias.name}"
                            for alias in node.names
                            if alias.name.startswith("vocdet") and module_file(alias.name) is None
                        ]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vocdet"):
                        found = module_file(node.module)
                        if found is None:
                            problems.append(f"{where}:{node.lineno} from {node.module}")
                            continue
                        names = defined_names(found) if found != "namespace" else set()
                        problems += [
                            f"{where}:{node.lineno} from {node.module} import {alias.name}"
                            for alias in node.names
                            if alias.name != "*" and alias.name not in names and module_file(f"{node.module}.{alias.name}") is None
                        ]
    return problems


def test_every_vocdet_import_resolves():
    assert unresolved_imports() == []


def test_the_check_finds_a_moved_module(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    (tmp_path / "pipeline" / "tools").mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "tools" / "old.py").write_text(
        "def main():\n    from vocdet.components.trainer import model\n    from vocdet.pipeline import nothing_here\n"
    )
    assert unresolved_imports() == [
        "pipeline/tools/old.py:2 from vocdet.components.trainer",
        "pipeline/tools/old.py:3 from vocdet.pipeline import nothing_here",
    ]


@pytest.mark.parametrize("module", ["vocdet.pipeline.tools.sample_weights"])
def test_the_make_targets_modules_import(module):
    """`make sample-weights`'s entry point imports (its training imports run inside main)."""
    __import__(module)
