"""A smiles2inchi data folder with the working shown: each output becomes the input's atoms, in
the input's order, each with the number InChI gives it, then the answer marker, then the InChI:

    CC(=O)c1cccc(F)c1  ->  C1 C6 O10 c7 c3 c2 c4 c8 F9 c5
                           InChI=1S/C8H7FO/c1-6(10)7-3-2-4-8(9)5-7/h2-5H,1H3

InChI's connection and hydrogen layers name atoms by a canonical numbering the model otherwise
works out silently; here it writes that numbering first, beside the input's own atoms
(seqtune.chem.molecules.inchi_working). A run on the new folder sets `model.answer_marker` to the
marker, so only the InChI is predicted and scored. Rows whose working cannot be made are dropped
and counted. Usage: scripts/inchi_working.py SRC_FOLDER DST_FOLDER [--marker ' => '] [--hydrogens]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqtune.chem.molecules import inchi_working


def convert(src: Path, dst: Path, marker: str, hydrogens: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        rows, dropped = [], 0
        for line in (src / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            work = inchi_working(row["input"], row["output"], hydrogens)
            if work is None:
                dropped += 1
                continue
            rows.append(json.dumps({**row, "output": f"{work}{marker}{row['output']}"}) + "\n")
        out[split], counts[split], counts[f"{split}_dropped"] = "".join(rows), len(rows), dropped
    dst.mkdir(parents=True)  # only once every split is made: nothing half-written
    for split, text in out.items():
        (dst / f"{split}.jsonl").write_text(text)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="a smiles2inchi data folder (train/val/test.jsonl)")
    ap.add_argument("dst", type=Path, help="the new folder (must not exist)")
    ap.add_argument("--marker", default=" => ", help="what separates the working from the InChI")
    ap.add_argument("--hydrogens", action="store_true", help="each atom's hydrogen count too (C1H3 C2 O3 O4H)")
    args = ap.parse_args()
    for split in ("train", "val", "test"):
        if not (args.src / f"{split}.jsonl").is_file():
            sys.exit(f"inchi_working: {args.src / f'{split}.jsonl'}: no such file (a smiles2inchi data folder)")
    if args.dst.exists():
        sys.exit(f"inchi_working: {args.dst}: already exists; choose a new folder")
    print(json.dumps(convert(args.src, args.dst, args.marker, args.hydrogens)))


if __name__ == "__main__":
    main()
