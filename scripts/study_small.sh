#!/usr/bin/env bash
# Lever screen of the learning-efficiency study on small molecules: every row is one
# `seqtune run` of configs/study/small_base.yaml (SmolLM2-135M, PubChem pairs of <= 14
# heavy atoms, 1 epoch, plain format, lr 5e-4 cosine, batch 16) with ONE change, scored on
# the 500-molecule NCI small holdout. Rows named *_2k train on 2,000 pairs instead of 4,000
# (half the CPU time; compare them with base_2k; mix_2k, which needs an instruction per task,
# with instruct_2k: 1,000 molecules x 2 tasks = 2,000 examples). Runs one thread each, two at a time on the
# two cores, so each row's examples/s is one core's. Rerun one row, e.g.:
#   OMP_NUM_THREADS=1 .venv/bin/seqtune run configs/study/small_base.yaml out_dir=runs/study/small/lr1e-3 train.lr=1e-3
# Then: .venv/bin/seqtune results runs/study/small
# Usage: scripts/study_small.sh ["ROW ROW ..."]   (PARALLEL=1 runs one row at a time)
set -uo pipefail
cd "$(dirname "$0")/.."
K2="data.train_size=2000"
ROWS=(
  "base"
  "paper model.format=instruct train.lr=2e-5 train.lr_schedule=linear train.warmup_ratio=0 train.batch_size=4"
  "lr1e-3 train.lr=1e-3"
  "lr2e-4 train.lr=2e-4"
  "paper_2k $K2 model.format=instruct train.lr=2e-5 train.lr_schedule=linear train.warmup_ratio=0 train.batch_size=4"
  "base_2k $K2"
  "smiles_atoms_2k $K2 model.input_split=smiles"
  "instruct_2k $K2 model.format=instruct"
  "1000x2_2k data.train_size=1000 train.epochs=2"
  "1000x2_aug_2k data.train_size=1000 train.epochs=2 data.augment=random_smiles"
  "grouped_2k $K2 train.order=grouped"
  "freeze10_2k $K2 model.freeze_layers=10"
  "curriculum_2k $K2 train.order=curriculum"
  "chars_out_2k $K2 model.output_split=chars"
  "mix_2k data.train_size=1000 data.mix=iupac2smiles model.format=instruct"
  "lora64_2k $K2 model.method=lora model.lora_r=64 model.lora_alpha=128 train.lr=1e-3"

)
ONLY="${1:-}"
run_row() {
  local name="$1"; shift
  [[ -f "runs/study/small/$name/metrics.json" ]] && return 0
  OMP_NUM_THREADS=1 .venv/bin/seqtune run configs/study/small_base.yaml out_dir="runs/study/small/$name" \
    train.progress=false "$@" > "runs/study/small/$name.log" 2>&1 || echo "row $name failed (see runs/study/small/$name.log)"
}
export -f run_row
mkdir -p runs/study/small
for row in "${ROWS[@]}"; do
  [[ -z "$ONLY" || " $ONLY " == *" ${row%% *} "* ]] && printf '%s\n' "$row"
done | xargs -P "${PARALLEL:-2}" -I{} bash -c 'run_row {}'
