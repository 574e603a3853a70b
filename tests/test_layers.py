"""The package's stages import only from the stages before them (docs/architecture.md).

Every ``import caloforge.X`` and ``from caloforge.X import ...`` of every module is read from its source,
those inside functions (lazy imports) and under ``TYPE_CHECKING`` included, and its stage compared with
the importing module's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import caloforge

PACKAGE = Path(caloforge.__file__).parent

STAGES: tuple[tuple[str, ...], ...] = (
    ("atomic",),
    ("jobs",),
    ("detector", "_compiled"),
    ("fullsim",),
    ("data",),
    ("showers",),
    ("models",),
    ("training",),
    ("export",),
    ("engine",),
    ("validation",),
    ("release",),
    ("cli",),
)
"""caloforge's stages in the order data flows through them; a module may import its own stage and earlier ones."""

RANK = {name: i for i, names in enumerate(STAGES) for name in names}


def _stage(module: str) -> str:
    """The stage (first name below ``caloforge``) of a dotted module name; "" for ``caloforge`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imported(tree: ast.AST, module: str) -> set[str]:
    """The caloforge modules a module's syntax tree imports (relative imports resolved)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("caloforge"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("caloforge"):
                found.add(name)
                if name == "caloforge":  # from caloforge import detector
                    found.update(f"caloforge.{a.name}" for a in node.names)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_every_stage_is_known() -> None:
    stages = {_stage(m) for m, _ in _modules()} - {""}
    unknown = sorted(stages - set(RANK))
    assert not unknown, f"modules outside the known stages: {unknown} (add them to STAGES and docs/architecture.md)"


def test_no_import_runs_back_up() -> None:
    back = []
    for module, path in _modules():
        stage = _stage(module)
        if not stage:
            continue
        for target in _imported(ast.parse(path.read_text(encoding="utf-8")), module):
            other = _stage(target)
            if other and other in RANK and RANK[other] > RANK[stage]:
                back.append(f"{module} ({stage}) imports {target} ({other})")
    assert not back, "imports from a later stage:\n" + "\n".join(back)
