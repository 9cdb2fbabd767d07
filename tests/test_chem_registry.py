"""The chemistry task registry: every task answers for itself, and no code tests a task's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from seqtune.chem import CHEM_TASKS, INPUT_KINDS

SRC = Path(__file__).resolve().parents[1] / "src" / "seqtune"

# (SMILES, openclatura's name for it): names the OPSIN round trip accepts, so every task's
# example of these molecules is a verified pair.
MOLECULES = [
    ("CCO", "ethanol"),
    ("Cn1c(=O)c2c(ncn2C)n(C)c1=O", "1,3,7-trimethyl-3,7-dihydro-1H-purine-2,6-dione"),
    ("CC(=O)Nc1ccc(O)cc1", "N-(4-hydroxyphenyl)acetamide"),
    ("C[C@H](N)C(=O)O", "(2S)-2-aminopropanoic acid"),
    ("C/C=C/C", "(2E)-but-2-ene"),
]


def _needs_chem() -> None:
    pytest.importorskip("rdkit")
    pytest.importorskip("openclatura")
    from seqtune.chem import opsin

    if not opsin.java_available():
        pytest.skip("no Java runtime for OPSIN")


def test_registry_holds_every_task_under_its_own_name():
    pytest.importorskip("rdkit")
    from seqtune.chem.tasks import INSTRUCTIONS, TASKS, ChemTask

    assert set(TASKS) == CHEM_TASKS == set(INSTRUCTIONS)
    for name, task in TASKS.items():
        assert isinstance(task, ChemTask) and task.name == name
        assert task.input_kind == INPUT_KINDS[name] in ("smiles", "name")
        assert INSTRUCTIONS[name] == task.instruction


def test_round_trip_tasks_are_the_tasks_with_a_way_back():
    pytest.importorskip("rdkit")
    from seqtune.chem import ROUND_TRIP_TASKS
    from seqtune.chem.tasks import TASKS

    assert set(ROUND_TRIP_TASKS) == {name for name, task in TASKS.items() if task.round_trip is not None}


def test_unknown_task_is_one_line_naming_the_known_tasks():
    pytest.importorskip("rdkit")
    from seqtune.chem.tasks import get_task

    with pytest.raises(ValueError) as err:
        get_task("smiles2vibes")
    message = str(err.value)
    assert "\n" not in message and "'smiles2vibes'" in message
    assert all(name in message for name in CHEM_TASKS)


@pytest.mark.parametrize("name", sorted(CHEM_TASKS))
def test_each_task_scores_its_own_examples_exactly(name):
    """make example -> score: the task's own references as predictions are right on every count,
    pass its consistency check, and are what its baseline answers."""
    _needs_chem()
    from seqtune.chem import molecules
    from seqtune.chem.baseline import predict
    from seqtune.chem.metrics import score
    from seqtune.chem.tasks import get_task
    from seqtune.chem.verify import first_consistent, first_round_trip, first_well_formed, molecule_vote

    task = get_task(name)
    made = [task.make_example(molecules.canonical_smiles(s), n, 0) for s, n in MOLECULES]
    assert all(m is not None for m in made)
    inputs, outputs = [m[0] for m in made], [m[1] for m in made]
    summary, rows = score(name, inputs, outputs, outputs)
    assert summary["n"] == len(MOLECULES) == len(rows)
    pcts = {k: v for k, v in summary.items() if k.endswith("_pct")}
    assert pcts and all(v == 100.0 for v in pcts.values()), pcts
    assert summary.get("mean_element_count_error", 0.0) == 0.0
    if name != "smiles2inchi":  # RDKit reads paracetamol's InChI back as its imidic-acid tautomer
        assert summary.get("mean_tanimoto", 1.0) == 1.0
    assert first_consistent(name, inputs, [["", "C1CC", out] for out in outputs]) == [2] * len(MOLECULES)
    assert first_well_formed(name, [["", "C1CC(", out] for out in outputs]) == [2] * len(MOLECULES)
    if task.round_trip is not None:  # the rules tool reads each reference back to its own input
        assert first_round_trip(name, inputs, [["", "C1CC(", out] for out in outputs]) == [2] * len(MOLECULES)
    assert molecule_vote(name, [["", "C1CC(", out] for out in outputs]) == [2] * len(MOLECULES)
    assert predict(name, inputs) == outputs


def _task_name_comparisons(source: str) -> list[int]:
    """Lines where a task name literal is compared (==, !=, in, not in, also inside a tuple, list
    or set) or matched in a `case`: the dispatch a registry replaces. Docstrings, defaults,
    help text and the registry's own table are not comparisons."""

    def names(node: ast.AST) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names(e) for e in node.elts)
        return isinstance(node, ast.Constant) and node.value in CHEM_TASKS

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(names(side) for side in [node.left, *node.comparators]):
            lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and names(node.value):
            lines.append(node.lineno)
    return lines


def test_the_scan_sees_dispatch_and_nothing_else():
    dispatch = (
        "if task == 'iupac2smiles':\n    pass\n"
        "ok = task in ('smiles2formula', 'x')\n"
        "y = 'a' if 'smiles2inchi' != t else 'b'\n"
        "match task:\n    case 'smiles2iupac':\n        pass\n"
    )
    assert _task_name_comparisons(dispatch) == [1, 3, 4, 6]
    harmless = (
        '"""Tasks: smiles2iupac, iupac2smiles."""\n'
        "task: str = 'smiles2iupac'\n"
        "p.add_argument('--task', default='smiles2iupac', help='e.g. smiles2iupac')\n"
        "if INPUT_KINDS.get(task) == 'smiles':\n    pass\n"
        "if task in CHEM_TASKS:\n    pass\n"
    )
    assert _task_name_comparisons(harmless) == []


def test_no_module_dispatches_on_a_task_name():
    found = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in _task_name_comparisons(path.read_text(encoding="utf-8"))
    ]
    assert not found, "task names tested outside the registry: " + ", ".join(found)
