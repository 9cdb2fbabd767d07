#!/usr/bin/env bash
# Data of the other chemistry tasks' CPU configs (configs/tasks/*_cpu.yaml): 28,000 / 300 / 300
# pairs of small PubChem molecules (<= 14 heavy atoms) per task, none in the holdouts. The four
# builds share one shard cache (same source, seed and filters), so molecules are named once.
set -euo pipefail
cd "$(dirname "$0")/.."
ST="${SEQTUNE:-.venv/bin/seqtune}"
for task in smiles2formula randomsmiles2canonical iupac2smiles smiles2inchi; do
  "$ST" data chem --task "$task" --source pubchem --max-heavy-atoms 14 --n 28600 --val-frac 300 --test-frac 300 \
    --seed 0 --workers "${WORKERS:-2}" --no-progress --exclude data/holdouts/moses_scaffold/test.jsonl \
    --exclude data/holdouts/nci_small/test.jsonl --out data/chem/tasks_cache
  mkdir -p "data/chem/pubchem_small_$task"
  mv data/chem/tasks_cache/{train,val,test}.jsonl data/chem/tasks_cache/provenance.json "data/chem/pubchem_small_$task/"
done
rm -rf data/chem/tasks_cache
