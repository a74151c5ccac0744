"""Dependencies point one way (docs/architecture.md): read from the source, every import of
every module, at any depth (a function-level import counts)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "npvae"

# package -> the npvae packages it must never import
FORBIDDEN = {
    "plumbing": ("core", "kernels", "inference", "training", "apps", "cli", "datasets", "plot"),
    "kernels": ("core", "inference", "training", "apps", "cli", "datasets", "plot"),
    "core": ("inference", "training", "apps", "cli", "datasets", "plot"),
    "inference": ("training", "apps", "cli", "plot"),
    "training": ("apps", "cli", "plot"),
}


def imports(path):
    """The npvae modules ``path`` imports, as dotted names."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "npvae" or name.startswith("npvae.")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_import_nothing_above_them(package):
    bad = []
    for path in sorted((ROOT / package).glob("*.py")):
        for name in imports(path):
            parts = name.split(".")
            whole = name == "npvae" and package in ("plumbing", "kernels", "core")  # all of it
            if whole or (len(parts) > 1 and parts[1] in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert not bad, bad


def test_metrics_uses_only_the_models_public_methods():
    tree = ast.parse((ROOT / "inference" / "metrics.py").read_text())
    private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and isinstance(node.value, ast.Name) and node.value.id == "model"
                      and node.attr.startswith("_")})
    assert not private, f"metrics reaches into the model: {private}"
