"""`seqtune check`'s training-time estimate against a short real run of the same config.

Runs `seqtune check CONFIG train.max_steps=N [key=value ...]`, then `seqtune train` with the same
settings into a temporary folder, and prints the estimate, the run's own training seconds (the
steps alone, epochs.jsonl's train_seconds: what the estimate predicts) and their ratio. The run's
test split is cut to 8 pairs, since only its training is compared; both commands read the same
splits. Time it on a quiet machine: the two commands run one after the other, so load between
them moves the ratio.

  python bench/check_estimate.py configs/tasks/iupac2smiles_cpu.yaml --steps 60
  python bench/check_estimate.py configs/demo.yaml --steps 40 model.name=smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SEQTUNE = [sys.executable, "-m", "seqtune"]
ESTIMATE = re.compile(r"estimated training time on this machine: [0-9.]+ min \(([0-9.]+) s/step")
CHEAP_TEST = ["data.test_size=8", "evaluate_base=false"]


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text(encoding="utf-8").splitlines() if info.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def seqtune(command: str, settings: list[str]) -> str:
    """stdout of `seqtune COMMAND SETTINGS`; its error line, and exit, when it fails."""
    done = subprocess.run([*SEQTUNE, command, *settings], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"seqtune {command}: {(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*", help="key=value, as for seqtune run")
    ap.add_argument("--steps", type=int, default=60, help="optimiser steps of the real run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="check_estimate_") as tmp:
        settings = [args.config, *CHEAP_TEST, *args.overrides, f"train.max_steps={args.steps}", f"out_dir={tmp}/run"]
        check = seqtune("check", settings)
        found = ESTIMATE.search(check)
        if found is None:
            sys.exit(f"no estimate in the output of seqtune check:\n{check}")
        seqtune("train", settings)
        last = Path(tmp, "run", "epochs.jsonl").read_text(encoding="utf-8").splitlines()[-1]
        actual = json.loads(last)["train_seconds"]
    estimate = float(found.group(1)) * args.steps  # s/step has more digits than the minutes
    print(f"{args.config} ({cpu_name()}), {args.steps} steps: "
          f"estimated {estimate:.0f} s ({found.group(1)} s/step), ran {actual:.0f} s "
          f"({actual / args.steps:.2f} s/step); estimate / actual = {estimate / actual:.2f}")


if __name__ == "__main__":
    main()
