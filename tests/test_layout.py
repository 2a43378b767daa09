"""The shape of the source tree: every product module imports; every import of a chorus module names a module and
a name that exist, those inside functions too (they run only when called, so a moved name would otherwise fail
in the one code path that imports it late); no product module grows past 400 lines; and the import cycles the
contracts let pass (`[tool.importlinter]` in pyproject.toml) are type hints only."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("runtime", "audio", "storage", "conversation", "brain", "memory", "bot", "cogs")
RIG = ("simulator", "benchmarks", "tests")
MAX_LINES = 400


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of a chorus module in the file, wherever it is."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = _module_name(path).split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                module = ".".join(base + ([module] if module else []))
            out.append((node.lineno, module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
    return [(line, module, names) for line, module, names in out if module.split(".")[0] in PRODUCT + RIG]


@pytest.mark.parametrize("package", PRODUCT)
def test_every_product_module_imports(package: str) -> None:
    root = importlib.import_module(package)
    names = [info.name for info in pkgutil.walk_packages(root.__path__, package + ".")]
    assert names, f"no modules found under {package}"
    for name in names:
        importlib.import_module(name)


@pytest.mark.parametrize("package", PRODUCT + RIG)
def test_every_import_of_a_chorus_module_resolves(package: str) -> None:
    missing = []
    for path in _sources(package):
        for line, module, names in _imported(path, ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{line}"
            try:
                imported = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                missing.append(f"{where}: no module {exc.name}")
                continue
            for name in names:
                submodule = hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
                if not hasattr(imported, name) and not submodule:
                    missing.append(f"{where}: {module} has no {name}")
    assert missing == []


def test_no_product_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for package in PRODUCT
        for p in _sources(package)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by job (at most {MAX_LINES} lines a module)"


def _type_checking_only(importer: str, imported: str) -> bool:
    """Whether every import of `imported` in `importer` sits under `if TYPE_CHECKING:`."""
    path = ROOT / (importer.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = [
        (line, node)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for line, module, names in _imported(path, ast.Module(body=[node], type_ignores=[]))
        if module == imported
        or f"{module}.".startswith(imported + ".")
        or any(f"{module}.{n}" == imported for n in names)
    ]
    return bool(found) and all(id(node) in guarded for _line, node in found)


def test_the_cycles_the_contracts_let_pass_are_type_hints_only() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    acyclic = [c for c in config["contracts"] if c["type"] == "acyclic_siblings"]
    assert acyclic, "the acyclic-siblings contract is missing"
    ignored = [
        tuple(part.strip() for part in rule.split("->")) for c in acyclic for rule in c.get("ignore_imports", [])
    ]
    assert [f"{a} -> {b}" for a, b in ignored if not _type_checking_only(a, b)] == []
