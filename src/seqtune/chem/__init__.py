"""Chemistry tasks for seqtune: verified SMILES/IUPAC datasets, chemistry scores, rule-based baseline.

Modules: ``build`` (dataset builder and its CLI), ``sources`` (MOSES, PubChem,
NCI, user files), ``pipeline`` (per-molecule clean/name/verify in workers),
``splits``, ``tasks``, ``metrics`` (``score``), ``verify``
(``first_consistent``), ``baseline`` (``predict``), ``naming`` (openclatura +
OPSIN round trip), ``opsin`` (in-process OPSIN), ``molecules`` (RDKit helpers).

Importing this package is cheap (no RDKit, no JVM), so the core can test
``task in CHEM_TASKS`` without the ``chem`` extra installed; the submodules
need it.
"""

CHEM_TASKS: frozenset[str] = frozenset(
    {"smiles2iupac", "iupac2smiles", "smiles2formula", "randomsmiles2canonical", "smiles2inchi"}
)

__all__ = ["CHEM_TASKS"]
