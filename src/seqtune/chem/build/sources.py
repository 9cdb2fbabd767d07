"""Where molecules come from: MOSES, PubChem (via ``chemicals``), RDKit's NCI sample, or a user file.

A source is loaded whole into memory as raw strings; parsing happens later in
the workers so that bad lines are counted there like any other reject.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from seqtune.chem import pubchem
from seqtune.runtime import cache_dir

MOSES_WHEEL = "molsets-0.3.1-py3-none-any.whl"
MOSES_REQUIREMENT = "molsets==0.3.1"
# MOSES's own splits inside the wheel. `moses-scaffold-test` holds scaffolds that occur in
# no MOSES training molecule: the held-out set for generalisation to new chemotypes.
MOSES_MEMBERS = {
    "moses": "moses/dataset/data/train.csv.gz",
    "moses-test": "moses/dataset/data/test.csv.gz",
    "moses-scaffold-test": "moses/dataset/data/test_scaffolds.csv.gz",
}
MOSES_MEMBER = MOSES_MEMBERS["moses"]
BUILTIN_SOURCES = (*MOSES_MEMBERS, "pubchem", "nci")


@dataclass
class SourceData:
    """Raw records of one source, in file order."""

    name: str
    smiles: list[str]
    # Names that came with the source (PubChem's IUPAC name); None elsewhere.
    names: list[str | None] | None = None
    ids: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.smiles)

    def record_id(self, index: int) -> str:
        return self.ids[index] if self.ids is not None else f"{self.name}:{index}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def moses_wheel(download: bool = True) -> Path:
    """Path of the cached molsets wheel, downloading it with pip (no dependencies) if needed.

    We read the CSV out of the wheel instead of installing molsets because its
    dependency pins break a modern environment.
    """
    dest = cache_dir() / "molsets"
    wheel = dest / MOSES_WHEEL
    if wheel.is_file():
        return wheel
    if not download:
        raise FileNotFoundError(f"{wheel} is missing; run scripts/setup_chem.sh")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", MOSES_REQUIREMENT, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"Could not run {' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0 or not wheel.is_file():
        raise RuntimeError(
            "Downloading the MOSES data (molsets wheel from PyPI) failed; run scripts/setup_chem.sh "
            f"on a machine with PyPI access or copy {MOSES_WHEEL} into {dest}.\n{proc.stderr[-2000:]}"
        )
    return wheel


def load_moses(source: str = "moses") -> SourceData:
    member = MOSES_MEMBERS[source]
    wheel = moses_wheel()
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(member)
    text = gzip.decompress(raw).decode()
    rows = text.splitlines()
    header = rows[0].split(",")
    col = [h.strip().lower() for h in header].index("smiles")
    smiles = [r.split(",")[col] if col else r.split(",", 1)[0] for r in rows[1:]]
    meta = {"source": source, "package": MOSES_REQUIREMENT, "member": member, "sha256": _sha256(raw)}
    return SourceData(source, smiles, meta=meta)


def load_pubchem() -> SourceData:
    """PubChem compounds bundled with ``chemicals``; column 4 is SMILES, column 7 PubChem's IUPAC name."""
    from importlib.metadata import version

    smiles: list[str] = []
    names: list[str | None] = []
    ids: list[str] = []
    digests = {}
    paths = pubchem.table_paths()
    if paths is None:
        raise RuntimeError("The 'chemicals' package is not installed (pip install 'seqtune[chem]')")
    for path in paths:
        data = path.read_bytes()
        digests[path.name] = _sha256(data)
        for line in data.decode("utf-8", errors="replace").splitlines():
            cols = line.split("\t")
            if len(cols) < 5:
                continue
            smiles.append(cols[4])
            names.append(cols[7] if len(cols) > 7 and cols[7] else None)
            ids.append(f"pubchem:CID{cols[0]}")
    meta = {"source": "pubchem", "package": f"chemicals=={version('chemicals')}", "sha256": digests}
    return SourceData("pubchem", smiles, names=names, ids=ids, meta=meta)


def load_nci() -> SourceData:
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    if not path.is_file():
        raise RuntimeError(f"RDKit's NCI sample is not in this rdkit build ({path})")
    data = path.read_bytes()
    smiles, ids = [], []
    for i, line in enumerate(data.decode().splitlines()):
        parts = line.split()
        smiles.append(parts[0] if parts else "")
        ids.append(f"nci:{parts[1]}" if len(parts) > 1 else f"nci:line{i + 1}")
    import rdkit

    meta = {
        "source": "nci",
        "package": f"rdkit=={rdkit.__version__}",
        "file": "NCI/first_5K.smi",
        "sha256": _sha256(data),
    }
    return SourceData("nci", smiles, ids=ids, meta=meta)


def _smiles_column(header: list[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for candidate in ("smiles", "canonical_smiles", "smi"):
        if candidate in lowered:
            return lowered.index(candidate)
    return None


def load_file(path: str | os.PathLike) -> SourceData:
    """One SMILES per line (extra whitespace-separated columns ignored) or a CSV/TSV with a smiles column.

    Empty lines are kept as empty records so that they are counted as rejects.
    """
    p = Path(path)
    data = p.read_bytes()
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    tag = p.name
    smiles: list[str] = []
    ids: list[str] = []
    first = lines[0] if lines else ""
    delimiter = "\t" if "\t" in first else ","
    col = _smiles_column(first.split(delimiter)) if lines else None
    if col is not None:
        reader = csv.reader(io.StringIO("\n".join(lines[1:])), delimiter=delimiter)
        for lineno, row in enumerate(reader, start=2):
            smiles.append(row[col].strip() if len(row) > col else "")
            ids.append(f"{tag}:{lineno}")
    else:
        for lineno, line in enumerate(lines, start=1):
            parts = line.split()
            smiles.append(parts[0] if parts else "")
            ids.append(f"{tag}:{lineno}")
    meta = {
        "source": "file",
        "path": str(p.resolve()),
        "sha256": _sha256(data),
        "format": "csv" if col is not None else "lines",
    }
    return SourceData(tag, smiles, ids=ids, meta=meta)


def load_jsonl_smiles(path: str | os.PathLike) -> SourceData:
    """The ``smiles`` field (else ``input``) of every line of a JSONL file, e.g. a built split."""
    import json

    p = Path(path)
    smiles, ids = [], []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            row = json.loads(line)
            smiles.append(str(row.get("smiles") or row.get("input") or ""))
            ids.append(str(row.get("id") or f"{p.name}:{lineno}"))
    return SourceData(p.name, smiles, ids=ids, meta={"source": "jsonl", "path": str(p), "sha256": _sha256(p.read_bytes())})


def exclusion_keys(paths: list[str | Path]) -> frozenset[str]:
    """InChIKeys of every molecule in these files (JSONL/CSV with a ``smiles`` column, or
    one SMILES per line): a build given them never emits those molecules, so a holdout
    stays out of every training set built after it, whatever SMILES spells it."""
    from ..molecules import inchikey_from_smiles

    keys: set[str] = set()
    for path in paths:
        data = load_jsonl_smiles(path) if str(path).endswith(".jsonl") else load_file(path)
        for smi in data.smiles:
            key = inchikey_from_smiles(smi)
            if key:
                keys.add(key)
    return frozenset(keys)


def load_source(source: str) -> SourceData:
    """``moses`` (``moses-test``, ``moses-scaffold-test``), ``pubchem``, ``nci`` or a path to a SMILES/CSV file."""
    if source in MOSES_MEMBERS:
        return load_moses(source)
    if source == "pubchem":
        return load_pubchem()
    if source == "nci":
        return load_nci()
    if Path(source).is_file():
        return load_file(source)
    raise ValueError(
        f"Unknown source {source!r}: use one of {', '.join(BUILTIN_SOURCES)} or a path to a SMILES file"
    )
