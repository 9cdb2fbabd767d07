"""Chemistry tasks for seqtune: verified SMILES/IUPAC datasets, chemistry scores, rule-based baseline.

Modules: ``tasks`` (the registry: one ``ChemTask`` per task, ``get_task``), ``scores``
(score rows per kind of output), ``metrics`` (``score``), ``verify`` (``first_consistent``),
``baseline`` (``predict``), ``build/`` (the dataset builder: sources, shards, splits, and
its CLI), ``naming`` (openclatura + OPSIN round trip), ``opsin`` (in-process OPSIN),
``molecules`` (RDKit helpers).

Importing this package is cheap (no RDKit, no JVM), so the core can ask which tasks are
chemistry and what their inputs are without the ``chem`` extra installed; the submodules
need it.
"""

# What each task reads: a SMILES string or an IUPAC name. The server validates and draws
# inputs by it, the model card picks its example by it; the rest of each task's behaviour
# is its ``seqtune.chem.tasks.ChemTask``.
INPUT_KINDS: dict[str, str] = {
    "smiles2iupac": "smiles",
    "iupac2smiles": "name",
    "smiles2formula": "smiles",
    "randomsmiles2canonical": "smiles",
    "smiles2inchi": "smiles",
}

CHEM_TASKS: frozenset[str] = frozenset(INPUT_KINDS)
# The tasks whose outputs are SMILES, which `generate.canonical` may rewrite in canonical form.
SMILES_OUTPUT_TASKS: tuple[str, ...] = ("iupac2smiles", "randomsmiles2canonical")
# The tasks from SMILES to names, whose inputs `data.input_order: name` may write in the name's order.
NAME_OUTPUT_TASKS: tuple[str, ...] = ("smiles2iupac",)

# The tasks whose outputs a rules tool reads back into what the task reads (OPSIN a name,
# openclatura a SMILES, RDKit an InChI), which `generate.verify: round_trip` needs
# (``ChemTask.round_trip``; a test holds the two equal).
ROUND_TRIP_TASKS: tuple[str, ...] = ("smiles2iupac", "iupac2smiles", "smiles2inchi")


def round_trip_refusal(task: str) -> str | None:
    """Why `verify: round_trip` cannot serve ``task`` (None where it can): one wording for the config,
    which refuses before training, and the decode path, which `predict`/`evaluate` reach directly."""
    if task in ROUND_TRIP_TASKS:
        return None
    return (f"round_trip reads outputs back into inputs for {', '.join(ROUND_TRIP_TASKS)}, not for {task!r}; "
            "use vote or well_formed")


# The tasks whose partial outputs a check can judge against the input molecule while beams are
# searched, which `generate.guide` needs (``ChemTask.prefix_check``; a test holds the two equal).
GUIDED_TASKS: tuple[str, ...] = ("smiles2inchi",)


def guide_refusal(task: str) -> str | None:
    """Why `guide` cannot serve ``task`` (None where it can), for the config and the decode path."""
    if task in GUIDED_TASKS:
        return None
    return f"guide checks the partial outputs of {', '.join(GUIDED_TASKS)}, not of {task!r}"


__all__ = ["CHEM_TASKS", "GUIDED_TASKS", "INPUT_KINDS", "NAME_OUTPUT_TASKS", "ROUND_TRIP_TASKS", "SMILES_OUTPUT_TASKS", "guide_refusal",
           "round_trip_refusal"]
