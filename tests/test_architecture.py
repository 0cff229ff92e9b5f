"""The layering of docs/architecture.md, enforced on the source (every import, function-level ones too).

cli → pipeline → {extract, train} → evaluate → data: `evaluate` never imports `train`, `data` imports
no stage, only `cli` and `__main__` import `cli`, only `cli` and `pipeline` import `pipeline`, and no
module imports another that (through any chain) imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "videolt"
STAGES = ("extract", "train", "evaluate", "pipeline")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The videolt module `name` refers to (a module, or the package a name is imported from)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """Every videolt module imported anywhere in `path` (module level, functions, type-checking blocks)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name` imports the submodule pkg.name when there is one.
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    return {m for m in (_resolve(n) for n in found if n == "videolt" or n.startswith("videolt.")) if m != module}


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges(rule) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if rule(_layer(a), _layer(b)))


def test_the_graph_sees_imports_inside_functions():
    assert "videolt.data.workdir" in GRAPH["videolt.cli"]  # imported inside command functions only


def test_evaluate_never_imports_train():
    assert _edges(lambda a, b: a == "evaluate" and b == "train") == []


def test_data_imports_no_stage():
    assert _edges(lambda a, b: a == "data" and b in STAGES) == []


def test_only_the_entry_points_import_cli():
    assert _edges(lambda a, b: b == "cli" and a not in ("cli", "__main__")) == []


def test_only_cli_and_pipeline_import_pipeline():
    assert _edges(lambda a, b: b == "pipeline" and a not in ("cli", "pipeline", "__main__")) == []


def _cycle() -> list[str] | None:
    """One import cycle between modules, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = 1
        stack.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if colour.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in colour and (found := visit(n)):
                return found
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in colour and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("rule", ["evaluate->train", "cycle"])
def test_the_checks_can_fail(monkeypatch, rule):
    """A planted violation is caught: the checks are not vacuous."""
    if rule == "evaluate->train":
        monkeypatch.setitem(GRAPH, "videolt.evaluate.metrics", GRAPH["videolt.evaluate.metrics"] | {"videolt.train"})
        assert "videolt.evaluate.metrics -> videolt.train" in _edges(lambda a, b: a == "evaluate" and b == "train")
    else:
        monkeypatch.setitem(GRAPH, "videolt.registry", GRAPH["videolt.registry"] | {"videolt.cli"})
        assert _cycle() is not None


def test_runner_means_the_download_batch_runner():
    """One word, one thing (docs/architecture.md, Glossary): the only `runner` module is the download loop."""
    assert [m for m in MODULES if m.rpartition(".")[2] == "runner"] == ["videolt.data.download.runner"]
