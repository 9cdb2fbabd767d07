#!/usr/bin/env bash
# Representation screen of the other chemistry tasks (docs/results/learning_efficiency, "Other
# chemistry tasks"): each row is one `seqtune run` of configs/tasks/<task>_cpu.yaml on 2,000
# pairs, one thread, with ONE change, scored on that task's 300 test molecules. The rows ran
# on the earlier 6,000-pair build of the task data (commit 2176460), which this script takes
# from git, so the figures reproduce although data/chem now ships the 28,000-pair build (the
# kept run configs name the byte-identical copy the screen read, /tmp/old_tasks).
# Usage: scripts/study_tasks.sh ["ROW ROW ..."]   (PARALLEL=1 runs one row at a time)
set -uo pipefail
cd "$(dirname "$0")/.."
OLD=2176460
ROWS=(
  "formula_base_2k smiles2formula"
  "formula_atoms_2k smiles2formula model.input_split=smiles"
  "canon_base_2k randomsmiles2canonical model.input_split=none model.output_split=none"
  "canon_atoms_2k randomsmiles2canonical model.input_split=smiles model.output_split=smiles"
  "i2s_base_2k iupac2smiles"
  "i2s_atoms_2k iupac2smiles model.output_split=smiles"
)
for task in smiles2formula randomsmiles2canonical iupac2smiles; do
  dir="runs/screen_tasks/data_6000/pubchem_small_$task"
  [[ -f "$dir/test.jsonl" ]] && continue
  mkdir -p "$dir"
  for split in train val test; do
    git show "$OLD:data/chem/pubchem_small_$task/$split.jsonl" > "$dir/$split.jsonl"
  done
done
run_row() {
  local name="$1" task="$2"; shift 2
  [[ -f "runs/screen_tasks/$name/metrics.json" ]] && return 0
  OMP_NUM_THREADS=1 .venv/bin/seqtune run "configs/tasks/${task}_cpu.yaml" out_dir="runs/screen_tasks/$name" \
    data.path="runs/screen_tasks/data_6000/pubchem_small_$task" data.train_size=2000 train.progress=false "$@" \
    > "runs/screen_tasks/$name.log" 2>&1 || echo "row $name failed (see runs/screen_tasks/$name.log)"
}
export -f run_row
ONLY="${1:-}"
for row in "${ROWS[@]}"; do
  [[ -z "$ONLY" || " $ONLY " == *" ${row%% *} "* ]] && printf '%s\n' "$row"
done | xargs -P "${PARALLEL:-2}" -I{} bash -c 'run_row {}'
