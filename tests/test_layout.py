"""The package layout is the architecture: imports flow one way, and light commands stay light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "seqtune"
# Top-level modules that sit above the core: they assemble training, inference and the rest.
ABOVE_CORE = {"cli", "pipeline", "preflight", "export", "__main__"}
UPPER = ("seqtune.cli", "seqtune.pipeline", "seqtune.preflight", "seqtune.export")
# (layer, the packages it must never import)
RULES = {
    "core": ("seqtune.training", "seqtune.inference", "seqtune.experiments", *UPPER),
    "seqtune.training": ("seqtune.inference", "seqtune.experiments", *UPPER),
    "seqtune.chem": ("seqtune.training", "seqtune.inference", "seqtune.experiments", *UPPER),
    "seqtune.inference": ("seqtune.experiments", *UPPER),
    # Sweeps start runs as subprocesses; nothing here trains or decodes in-process.
    "seqtune.experiments": ("seqtune.training", "seqtune.inference", *UPPER),
    # The commands beside `run` use the layers below, not the run pipeline.
    "seqtune.preflight": ("seqtune.pipeline", "seqtune.experiments", "seqtune.cli"),
    "seqtune.export": ("seqtune.pipeline", "seqtune.preflight", "seqtune.experiments", "seqtune.cli"),
    "seqtune.pipeline": ("seqtune.preflight", "seqtune.experiments", "seqtune.cli"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, relative imports resolved.
    `from a import b` counts as importing `a` and `a.b` (b may be a submodule)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _layer(name: str) -> str | None:
    if name.count(".") == 1 and name.rpartition(".")[2] not in ABOVE_CORE:
        return "core"
    return next((layer for layer in RULES if layer != "core" and _under(name, layer)), None)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_imports_flow_one_way() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        layer = _layer(name)
        if layer is None:
            continue
        for imported in sorted(_imports(path)):
            banned = [p for p in RULES[layer] if _under(imported, p)]
            if banned:
                wrong.append(f"{name} ({layer}) imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_layout_rules_see_every_layer() -> None:
    """The walk finds modules in every layer and resolves relative imports, so a rule cannot
    pass because it looked at nothing."""
    layers = {_layer(_module_name(p)) for p in SRC.rglob("*.py")}
    assert set(RULES) <= layers
    assert "seqtune.chem.tasks" in _imports(SRC / "chem" / "build" / "dataset.py")  # `from ..tasks import`


@pytest.mark.parametrize("argv", [["report", "--help"], ["results", "--help"], ["--version"]])
def test_light_commands_do_not_import_torch(argv: list[str]) -> None:
    code = (
        "import json, sys\n"
        "from seqtune.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert heavy == [], f"seqtune {' '.join(argv)} imported {heavy[:5]}"
