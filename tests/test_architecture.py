"""The package layering, checked from the source: no import cycle between promoter's packages, and
nothing below the operator imports it.

Every import counts, including those deferred into functions (they still tie the packages together:
a deferred import only hides a cycle from the interpreter, not from the next maintainer).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

# Who may import whom: the core depends on nothing else in promoter; these never reach the operator.
CORE = "promoter.promotion"
BELOW_THE_OPERATOR = (
    "promoter.promotion",
    "promoter.pipelines",
    "promoter.serving",
    "promoter.loadtest",
    "promoter.local",
    "promoter.registry",
)


def _package_root() -> Path:
    spec = importlib.util.find_spec("promoter")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def _modules() -> Iterator[tuple[str, Path]]:
    root = _package_root()
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("promoter", *parts)), path


def _imports(module: str, path: Path) -> set[str]:
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
    return {name for name in found if name == "promoter" or name.startswith("promoter.")}


def _unit(module: str) -> str:
    """A package (`promoter.operator`) or a top-level module (`promoter.cli`)."""
    return ".".join(module.split(".")[:2])


def _graph() -> dict[str, set[str]]:
    known = {name for name, _ in _modules()}
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        targets = {_unit(name) for name in _imports(module, path) if name in known and name != "promoter"}
        graph.setdefault(_unit(module), set()).update(targets - {_unit(module)})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checker_sees_the_packages_and_finds_a_planted_cycle() -> None:
    graph = _graph()
    assert {CORE, "promoter.operator", "promoter.pipelines", "promoter.local"} <= set(graph)
    assert "promoter.promotion" in graph["promoter.operator"]
    planted = {**graph, CORE: graph[CORE] | {"promoter.operator"}}
    assert _cycle(planted) is not None


def test_no_import_cycle_between_packages() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_core_depends_on_nothing_else_in_promoter() -> None:
    assert _graph()[CORE] == set()


@pytest.mark.parametrize("unit", BELOW_THE_OPERATOR)
def test_only_the_operator_and_the_cli_reach_the_operator(unit: str) -> None:
    assert "promoter.operator" not in _graph()[unit]


def test_in_the_cli_only_the_cluster_commands_reach_the_operator() -> None:
    """`promoter operator` and `webhook-cert` start or serve the operator; every other command
    (run, status, rollback, serve, ...) drives promotions through the core alone."""
    reaching = {
        module
        for module, path in _modules()
        if module.startswith("promoter.cli")
        and any(name.startswith("promoter.operator") for name in _imports(module, path))
    }
    assert reaching == {"promoter.cli.cluster"}
