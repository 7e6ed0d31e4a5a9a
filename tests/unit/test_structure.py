"""The code layout rules: no module over 400 lines, no function over 12 parameters, no import cycle among rs_wsss
modules nor among its packages, and no torch in the raster layer (read with ast, so lazy imports inside functions
count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
MAX_PARAMS = 12
# the public API keeps its keyword options (one per CLI option), grouped inside by spec objects
PUBLIC_KEYWORD_API = {"rs_wsss/api.py:segment_raster", "rs_wsss/api.py:train_from_tags"}


def _modules(package: str, folder: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _typing_only(tree: ast.AST) -> set[int]:
    """Ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    return {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and isinstance(block.test, ast.Name)
            and block.test.id == "TYPE_CHECKING" for stmt in block.body for n in ast.walk(stmt)}


def import_graph(typing: bool = True) -> dict[str, set[str]]:
    """rs_wsss module → the rs_wsss modules it imports (at module level or inside functions; ``typing=False``
    leaves out the ``if TYPE_CHECKING:`` imports, which only annotate)."""
    mods = _modules("rs_wsss", ROOT / "rs_wsss")
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(), str(path))
        skip = set() if typing else _typing_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name and t != "rs_wsss":
                    graph[name].add(t)
    return graph


def unit(module: str) -> str:
    """The layer a module belongs to: its sub-package (``rs_wsss.raster``), or itself for a top-level module."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to layers: sub-package (or top-level module) → the others it imports."""
    out: dict[str, set[str]] = {}
    for m, targets in graph.items():
        out.setdefault(unit(m), set()).update(unit(t) for t in targets if unit(t) != unit(m))
    return out


def imported_distributions(folder: Path) -> dict[str, set[str]]:
    """Module file → the top-level names it imports (at module level or inside functions, ``TYPE_CHECKING`` too)."""
    out: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_rs_wsss():
    graph = import_graph()
    assert graph["rs_wsss.segment"] >= {"rs_wsss.outputs", "rs_wsss.raster.blocks"}  # the parser sees imports
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_no_package_imports_a_package_that_imports_it_back():
    graph = package_graph(import_graph())
    assert "rs_wsss.model" in graph["rs_wsss.train"]  # the collapsed graph still sees the imports
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])
    assert "rs_wsss.model" not in graph["rs_wsss.config"]  # config is below the model it configures
    assert not graph["rs_wsss._version"]  # a leaf: checkpoint and STAC writers import it, not the package root
    # the one model factory: nothing but build.py constructs WSSS or resolves a checkpoint's config (annotating a
    # parameter as WSSS under TYPE_CHECKING constructs nothing)
    builders = {m for m, targets in import_graph(typing=False).items() if "rs_wsss.model.wsss" in targets}
    assert builders == {"rs_wsss.build"}, builders
    annotators = {m for m, targets in import_graph().items() if "rs_wsss.model.wsss" in targets} - builders
    assert "rs_wsss.model.checkpoint" in annotators  # the typing-only imports are seen, and only they are let pass


def test_the_package_graph_collapses_modules_into_their_package():
    graph = {"rs_wsss.a.x": {"rs_wsss.b.y"}, "rs_wsss.b.y": {"rs_wsss.a.z"}, "rs_wsss.a.z": set()}
    assert find_cycle(graph) is None  # no module cycle …
    assert find_cycle(package_graph(graph)) == ["rs_wsss.a", "rs_wsss.b", "rs_wsss.a"]  # … but a package cycle


def test_the_raster_layer_never_imports_torch():
    used = imported_distributions(ROOT / "rs_wsss" / "raster")
    assert "rasterio" in used["rs_wsss/raster/io.py"]  # the scan sees imports
    torch_users = sorted(p for p, names in used.items() if "torch" in names)
    assert not torch_users, torch_users


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_over_400_lines():
    files = [*ROOT.joinpath("rs_wsss").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]
    assert len(files) > 30
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def parameter_counts(folder: Path) -> dict[str, int]:
    """``file:function`` → its parameters (``self``/``cls`` not counted; ``*args``/``**kwargs`` count one each)."""
    out: dict[str, int] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
                n = len(names) + (a.vararg is not None) + (a.kwarg is not None) - (names[:1] in (["self"], ["cls"]))
                key = f"{path.relative_to(ROOT)}:{node.name}"
                out[key] = max(n, out.get(key, 0))
    return out


def test_no_function_takes_more_than_12_parameters():
    counts = parameter_counts(ROOT / "rs_wsss")
    assert counts["rs_wsss/api.py:segment_raster"] > MAX_PARAMS  # the count sees keyword-only parameters
    assert counts["rs_wsss/segment.py:load_segmenter"] == 3  # … and ``self`` is not one
    long = {k: n for k, n in counts.items() if n > MAX_PARAMS and k not in PUBLIC_KEYWORD_API}
    assert not long, long


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dist_name(requirement: str) -> str:
    import re

    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_distribution_is_declared_and_the_version_has_one_place():
    import importlib.metadata as md

    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]  # rs_wsss.__version__ is the one place
    declared = {_dist_name(r) for r in project["dependencies"]}
    declared |= {_dist_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    owners = md.packages_distributions()
    used: set[str] = set()
    for path in [*ROOT.joinpath("rs_wsss").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            used |= {n.split(".")[0] for n in names}
    third_party = {m for m in used if m in owners and m not in ("rs_wsss", "rs_wsss_cli", "rs_wsss_configs")}
    assert {"torch", "rasterio", "numpy", "scipy", "safetensors", "huggingface_hub"} <= third_party
    missing = {m: owners[m] for m in third_party if not {_dist_name(d) for d in owners[m]} & declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert "rtree" not in declared  # geopandas builds its spatial indexes with shapely's STRtree
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def misplaced_docstrings(folder: Path) -> list[str]:
    """Classes whose docstring stands after other statements (e.g. annotations): Python then sets ``__doc__ = None``
    and the text documents nothing."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and ast.get_docstring(node) is None:
                strings = [s for s in node.body[1:] if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                           and isinstance(s.value.value, str)]
                if strings:
                    out.append(f"{path.relative_to(folder)}:{node.name}")
    return out


def test_no_class_docstring_stands_after_its_annotations(tmp_path):
    assert not misplaced_docstrings(ROOT / "rs_wsss")
    (tmp_path / "m.py").write_text('class A:\n    x: int\n    """Lost."""\n\n\nclass B:\n    """Kept."""\n')
    assert misplaced_docstrings(tmp_path) == ["m.py:A"]  # the check finds the case it is for
