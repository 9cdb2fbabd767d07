"""A chemistry run end to end on a tiny model: chemistry scores, rules baseline, verified decoding."""

import json

from seqtune.config import load_config
from seqtune.pipeline import run_pipeline


def test_chem_run_has_chemistry_scores_baseline_and_verification(tmp_path, tiny_gpt2_dir):
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": "data/smiles2iupac_demo", "task": "smiles2iupac", "train_size": 16, "test_size": 6},
        "model": {"name": str(tiny_gpt2_dir), "format": "instruct"},
        "train": {"epochs": 1, "batch_size": 8, "progress": False, "logger": "none"},
        "generate": {"max_new_tokens": 8, "num_beams": 3, "candidates": 3, "verify": "opsin"},
    })
    result = run_pipeline(cfg)
    tuned, rules = result["tuned"], result["baseline"]
    for key in ("exact_match", "edit_distance", "opsin_parsable_pct", "same_molecule_pct", "verified_pct",
                "top_beam_same_molecule_pct"):
        assert key in tuned, key
    # the rules-based namer produced these very names: it scores 100% on its own data
    assert rules["exact_match"] == 100.0 and rules["same_molecule_pct"] == 100.0
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("verified" in r and "top_beam" in r for r in rows)
    epochs = [json.loads(x) for x in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    # per-epoch scores are the validation split's, named so (val_<score>)
    assert epochs[0]["epoch"] == 1 and "val_same_molecule_pct" in epochs[0]
