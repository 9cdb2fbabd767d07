"""PubChem's IUPAC names, looked up by InChIKey: a namer independent of openclatura.

The ``chemicals`` package (the chem extra) ships PubChem records of about 73,000 compounds
(``Identifiers/chemical identifiers pubchem {large,small}.tsv``: column 6 the InChIKey,
column 7 PubChem's computed IUPAC name). Beside the rules baseline, which made the labels
and so scores ~100 % by construction, these names give a comparison that is not circular,
on the molecules PubChem's table covers.
"""

from __future__ import annotations

import functools
from pathlib import Path

from seqtune.runtime import package_dir

from . import molecules

SOURCE = "PubChem IUPAC names (the chemicals package), looked up by InChIKey"
FILES = ("chemical identifiers pubchem large.tsv", "chemical identifiers pubchem small.tsv")


def table_paths() -> list[Path] | None:
    """Where the chemicals package keeps its PubChem tables (the dataset builder's PubChem source
    reads the same files); None when the package is not installed."""
    root = package_dir("chemicals")
    return None if root is None else [root / "Identifiers" / fname for fname in FILES]


@functools.lru_cache(maxsize=1)
def names_by_inchikey() -> dict[str, str]:
    """InChIKey -> PubChem's IUPAC name, for every record that has both."""
    paths = table_paths()
    if paths is None:
        raise ModuleNotFoundError("the PubChem name lookup needs the 'chemicals' package "
                                  "(pip install 'seqtune[chem]')", name="chemicals")
    table: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                cols = line.split("\t", 8)
                if len(cols) > 7 and cols[6] and cols[7].strip():
                    table.setdefault(cols[6].strip(), cols[7].strip())
    return table


def iupac_names(smiles: list[str]) -> list[str | None]:
    """PubChem's IUPAC name of each SMILES's molecule; None where the table lacks it (or RDKit
    cannot read the SMILES)."""
    table = names_by_inchikey()
    out: list[str | None] = []
    for s in smiles:
        key = molecules.inchikey_from_smiles(s)
        out.append(table.get(key) if key else None)
    return out
