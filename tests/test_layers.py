"""The house: every import of attexp points down the layers of ../shared/ARCHITECTURE.md ("The package").

Read from the source with `ast` (imports inside functions count too), so a new module that reaches up a layer,
or a stage that reads another stage's job module, fails here rather than in a reader's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "attexp"

# Bottom to top. A module may import its own layer or a lower one.
LAYERS = [
    {"attexp.errors", "attexp.utils", "attexp.registry"},
    {"attexp.io"},
    {"attexp.config"},
    {"attexp.tracking", "attexp.distributed", "attexp.plots"},
    {"attexp.models"},
    {"attexp.runner"},
    {"attexp.data"},
    {"attexp.train"},
    {"attexp.explain"},
    {"attexp.distill"},
    {"attexp.evaluate"},
    {"attexp.analyze"},
    {"attexp.visualize"},
    {"attexp.api", "attexp.cli", "attexp.__main__", "attexp"},
]
STAGES = ("data", "train", "explain", "distill", "evaluate", "analyze", "visualize")
# What the visualize stage renders from artifacts alone; what the explain stage never reaches.
FORBIDDEN = {
    "attexp.visualize": ("attexp.models", "attexp.explain", "attexp.distill", "attexp.evaluate", "attexp.analyze"),
    "attexp.explain": ("attexp.distill", "attexp.analyze", "attexp.evaluate"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for level, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "attexp"):
            return level
    if module == "attexp":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} is in no layer of LAYERS; place it in ../shared/ARCHITECTURE.md's order")


def imports(path: Path) -> list[str]:
    """Every attexp module `path` imports (also inside functions), with `from pkg import module` resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("attexp")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attexp") and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/")
                ).is_dir()
                found.append(candidate if is_module else node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_down_the_layers(path):
    me = module_name(path)
    mine = layer_of(me)
    up = [target for target in imports(path) if layer_of(target) > mine]
    assert not up, f"{me} (layer {mine}) imports a higher layer: {up}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_what_a_stage_never_imports(package):
    offending = []
    for path in MODULES:
        me = module_name(path)
        if me == package or me.startswith(package + "."):
            offending += [(me, t) for t in imports(path) if t.startswith(FORBIDDEN[package])]
    assert not offending, f"{package} must not import {FORBIDDEN[package]}: {offending}"


def test_no_stage_imports_another_stages_job_module():
    offending = []
    for path in MODULES:
        me = module_name(path)
        stage = me.split(".")[1] if me.count(".") >= 1 else ""
        for target in imports(path):
            parts = target.split(".")
            if len(parts) >= 3 and parts[1] in STAGES and parts[1] != stage and parts[-1].endswith(("job", "jobs")):
                offending.append((me, target))
    assert not offending, f"a stage imports another stage's job module: {offending}"


# Modules that may import packages by name: the registry (its lazy `load_all`, the one place that imports every
# package) and the faces at the top. Anywhere else, a call of `load_all` or `importlib.import_module` would import
# the stage packages from below, an arrow up that the import statements above do not show.
DYNAMIC_IMPORTERS = {"attexp.registry", "attexp.api", "attexp.cli", "attexp.__main__", "attexp"}


def dynamic_imports(path: Path) -> list[str]:
    """Calls in `path` that import modules by name: `load_all()`, `importlib.import_module()`, `__import__()`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("load_all", "import_module", "__import__"):
                found.append(f"{name}() at line {node.lineno}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_lower_layers_do_not_import_packages_by_name(path):
    me = module_name(path)
    if me in DYNAMIC_IMPORTERS:
        return
    calls = dynamic_imports(path)
    assert not calls, f"{me} imports modules by name ({calls}); only {sorted(DYNAMIC_IMPORTERS)} may"


def test_manifests_are_read_through_their_typed_fields():
    """attexp's code reads a manifest's fields by name (`artifact.manifest.label_names`), never as a string key,
    so a key is spelled once, on its model in attexp/io/manifests.py."""
    import re

    pattern = re.compile(r"manifest\w*(\.get\(|\[)\s*[\"']")
    offending = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in MODULES
        if module_name(path) not in ("attexp.io.manifests", "attexp.io.records")  # the models and their schemas
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offending, f"manifest keys read as strings: {offending}"
