from seqtune.config import load_config
from seqtune.preflight import preflight


def test_check_prints_plan_and_estimate(tmp_path, tiny_llama_dir):
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"),
        "data": {"path": "data/smiles2iupac_demo", "task": "smiles2iupac", "train_size": 40, "max_length": 500},
        "model": {"name": str(tiny_llama_dir)},
        "train": {"epochs": 2, "batch_size": 8},
    })
    report = preflight(cfg)
    assert "train/val/test = 40/200/200" in report
    assert "plan: 2 epochs x 5 steps = 10 steps of 8 examples" in report
    assert "estimated training time on this machine" in report
    assert "over-long examples (drop):" in report
    assert not (tmp_path / "run").exists()  # a check writes nothing
