"""`torchrun` runs the same command on several processes (gloo on CPU here, NCCL on GPUs)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path, tiny_llama_dir):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"input": f"x{i}", "output": f"y{i}"}) + "\n" for i in range(40)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""out_dir: {tmp_path / 'run'}
data: {{path: {data}, task: toy, test_fraction: 0.1}}
model: {{name: {tiny_llama_dir}, format: plain}}
train: {{epochs: 2, batch_size: 8, lr: 1.0e-3, progress: false, logger: none}}
generate: {{max_new_tokens: 4}}
""")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--nproc-per-node", "2", "-m", "seqtune", "run", str(cfg)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("scoring the base model") == 1  # one process writes and scores
    epochs = [json.loads(x) for x in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["tuned"]["edit_distance"] <= 1.0
