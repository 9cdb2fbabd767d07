#!/usr/bin/env bash
# Rebuild the chemistry data shipped in data/ for the learning-efficiency study
# (docs/results/learning_efficiency). Byte-identical with the same package versions;
# ~15 min on 2 cores. The holdouts are built first and every training set is built
# with --exclude holdout, so no holdout molecule (by InChIKey) is in any training set.
set -euo pipefail
cd "$(dirname "$0")/.."
ST="${SEQTUNE:-.venv/bin/seqtune}"
build() { "$ST" data chem --task smiles2iupac --seed 0 --clean-shards --no-progress "$@"; }

# Development holdouts: 500 molecules from MOSES's scaffold test split (scaffolds absent
# from MOSES train), and 500 small molecules (<= 14 heavy atoms) from RDKit's NCI sample.
build --source moses-scaffold-test --n 500 --val-frac 0 --test-frac 500 --out data/holdouts/moses_scaffold
build --source nci --max-heavy-atoms 14 --n 500 --val-frac 0 --test-frac 500 --out data/holdouts/nci_small
rm -f data/holdouts/*/train.jsonl data/holdouts/*/val.jsonl
HOLD=(--exclude data/holdouts/moses_scaffold/test.jsonl --exclude data/holdouts/nci_small/test.jsonl)

# Training sets: small PubChem molecules (the demo and small-molecule recipes) and MOSES.
build --source pubchem --max-heavy-atoms 14 --n 20600 --val-frac 300 --test-frac 300 "${HOLD[@]}" \
  --out data/chem/pubchem_small
build --source moses --n 30600 --val-frac 300 --test-frac 300 "${HOLD[@]}" --out data/chem/moses
