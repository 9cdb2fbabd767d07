"""Chemistry tasks for seqtune: verified SMILES/IUPAC datasets, chemistry scores, rule-based baseline.

Modules: ``build/`` (the dataset builder: sources, shards, splits, and its CLI),
``tasks``, ``metrics`` (``score``), ``verify`` (``first_consistent``), ``baseline``
(``predict``), ``naming`` (openclatura + OPSIN round trip), ``opsin`` (in-process
OPSIN), ``molecules`` (RDKit helpers).

Importing this package is cheap (no RDKit, no JVM), so the core can test
``task in CHEM_TASKS`` without the ``chem`` extra installed; the submodules
need it.
"""

CHEM_TASKS: frozenset[str] = frozenset(
    {"smiles2iupac", "iupac2smiles", "smiles2formula", "randomsmiles2canonical", "smiles2inchi"}
)

__all__ = ["CHEM_TASKS"]
