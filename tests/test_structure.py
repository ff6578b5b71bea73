"""The tree's shape: no import cycle anywhere, function-local imports included (a cycle held together
by an import inside a function is still a cycle), and no script imported by the library."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("extra", "Memorization", "ObjectDetection", "MNAD", "DualMemory", "comparison")
SCRIPTS = {"fit", "score", "compare", "Memorization.run", "Memorization.reproduce", "Memorization.figures",
           "Memorization.evaluate", "ObjectDetection.run", "MNAD.train", "MNAD.evaluate",
           "DualMemory.train", "DualMemory.evaluate"}


def module_files(root=ROOT):
    """{dotted module name: path} of the repository's own modules (tests and benchmarks left out)."""
    modules = {}
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if relative.parts[0] not in PACKAGES and len(relative.parts) > 1:
            continue
        parts = relative.with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(modules):
    """{module: modules of the tree it imports, anywhere in its source}; ``from a import b`` names the
    module a.b when that is one, else a."""
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                            else node.module for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_function_local_imports_count(tmp_path):
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "one.py").write_text("def f():\n    from extra.two import g\n")
    (tmp_path / "extra" / "two.py").write_text("from extra import one\n")
    assert cycles(import_graph(module_files(tmp_path))) == [["extra.one", "extra.two"]]


def test_the_tree_has_no_import_cycle():
    assert cycles(import_graph(module_files())) == []


def test_the_library_imports_no_script():
    graph = import_graph(module_files())
    assert {name: sorted(graph[name] & SCRIPTS) for name in graph if graph[name] & SCRIPTS} == {}
