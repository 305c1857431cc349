"""Every public definition of recon/ has a docstring (numpydoc; STYLE.md).

A public definition is a module-level function or class, or a method or property of a public
class, whose name does not start with ``_``, in a module whose dotted name has no component
starting with ``_``; plus every function and class a module lists in ``__all__`` (followed through
re-exports to where it is defined). The walk reads the source (ast), so nothing is imported and
generated docstrings (dataclasses and NamedTuples write one of their own) do not count.

Exempt: dunder methods; members that dataclasses and NamedTuples generate (they have no source);
``@overload`` signatures (the implementation carries the docstring); property setters and
deleters (the getter does); nested functions; and constants listed in ``__all__`` (a value has no
docstring of its own).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "recon"

# kernels: typed when the kernel rewrite lands
EXCLUDED: set[str] = set()

_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[str, ast.Module]]:
    """Dotted module name -> (path relative to the repository, syntax tree)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        out[_module_name(path)] = (relative, ast.parse(path.read_text(encoding="utf-8"), relative))
    return out


def _dunder_all(tree: ast.Module) -> list[str]:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list | tuple), "__all__ must be a literal list"
            return [str(name) for name in value]
    return []


def _imported_names(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Names bound by ``from X import y [as z]`` at module level: z -> (X, y)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def _top_level(tree: ast.Module) -> dict[str, _Definition]:
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _decorator_names(node: _Definition) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)  # typing.overload, functools.cached_property, x.setter
    return names


def _needs_docstring(node: _Definition) -> bool:
    return not ({"overload", "setter", "deleter"} & _decorator_names(node))


def _members(cls: ast.ClassDef, qualname: str) -> Iterator[tuple[str, _Definition]]:
    """Public methods, properties and nested classes of a public class."""
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name.startswith("_"):
                continue
            yield f"{qualname}.{node.name}", node
            if isinstance(node, ast.ClassDef):
                yield from _members(node, f"{qualname}.{node.name}")


def _public_definitions() -> dict[str, tuple[str, _Definition]]:
    """``module:qualname`` -> (file, node) of every public definition outside EXCLUDED."""
    modules = _modules()
    public: dict[tuple[str, str], _Definition] = {}

    def resolve(module: str, name: str) -> tuple[str, str] | None:
        for _ in range(20):  # re-export chains are short; stop on cycles
            if module not in modules:
                return None  # outside recon (numpy, the standard library ...)
            tree = modules[module][1]
            if name in _top_level(tree):
                return module, name
            source = _imported_names(tree).get(name)
            if source is None:
                return None  # a constant or a module, not a function or class
            module, name = source
        return None

    for module, (_, tree) in modules.items():
        private_module = any(part.startswith("_") for part in module.split("."))
        for name, node in _top_level(tree).items():
            if not private_module and not name.startswith("_"):
                public[module, name] = node
        for name in _dunder_all(tree):
            found = resolve(module, name)
            if found is not None:
                public[found] = _top_level(modules[found[0]][1])[found[1]]

    out = {}
    for (module, name), node in public.items():
        path = modules[module][0]
        if path in EXCLUDED:
            continue
        definitions = [(name, node)]
        if isinstance(node, ast.ClassDef):
            definitions += list(_members(node, name))
        for qualname, definition in definitions:
            if _needs_docstring(definition):
                out[f"{module}:{qualname}"] = (path, definition)
    return out


def test_the_walk_sees_the_public_api() -> None:
    """The walk finds what DESIGN.md §4 calls public, and skips what is private or generated."""
    found = _public_definitions()
    for name in (
        "recon.grid:ImageGrid",
        "recon.grid:ImageGrid.voxel_size_mm",  # a property
        "recon.spect.geometry:SpectGeometry.circular",  # a classmethod
        "recon.algorithms.em:osem",
        "recon.io.interfile:read_interfile",  # defined in a package's __init__
        "recon._jit:announce_compilation",  # a private module's __all__
        "recon.system_model:SystemModel.forward",
        "recon.spect.model:SpectModel",
    ):
        assert name in found, name
    for name in (
        "recon.grid:_triple",  # private function
        "recon.grid:ImageGrid.__init__",  # dunder
        "recon.quant._study_images:read_entry",  # private module, not in an __all__
    ):
        assert name not in found, name
    assert len(found) > 400


def test_every_public_definition_has_a_docstring() -> None:
    missing = [
        f"{path}:{node.lineno} {name}"
        for name, (path, node) in sorted(_public_definitions().items())
        if not (ast.get_docstring(node) or "").strip()
    ]
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(
        missing
    )
