import pytest

from seqtune.config import load_config, parse_overrides, save_config
from seqtune.errors import ConfigError


def test_defaults_are_the_study_recipe_and_the_paper_recipe_is_kept():
    cfg = load_config()
    assert (cfg.train.lr, cfg.train.lr_schedule, cfg.train.warmup_ratio, cfg.train.batch_size) == \
        (5e-4, "cosine", 0.03, 16)
    from pathlib import Path

    paper = load_config(Path(__file__).resolve().parents[1] / "configs" / "paper_recipe.yaml")
    assert (paper.train.lr, paper.train.lr_schedule, paper.train.warmup_ratio, paper.train.batch_size) == \
        (2e-5, "linear", 0.0, 4)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("out_dir: x\ntrain:\n  epochs: 5\nmodel:\n  method: lora\n")
    cfg = load_config(p, ["train.lr=1e-4", "--data-path", "d.csv", "--train.batch_size=8", "--smiles-columns", "smi"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.path, cfg.train.batch_size) == (5, 1e-4, "d.csv", 8)
    assert cfg.model.method == "lora" and cfg.data.input_column == "smi"
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize("override,message", [
    (["train.lrr=1"], "unknown key 'train.lrr'; allowed: train.epochs"),
    (["train.epochs=three"], "train.epochs: expected an integer"),
    (["train.precision=fp16"], "train.precision: 'fp16' is not one of auto, bf16, fp32"),
    (["train.epochs=0"], "train.epochs: must be > 0"),
    (["data.test_fraction=1.5"], "data.test_fraction: must be in"),
    (["train=3"], "train: expected a section"),
    (["generate.candidates=5"], "generate.candidates: 5 needs generate.num_beams"),
    (["nokey"], "cannot read override"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, override)


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("true", True), ("false", False)])
def test_packing_is_auto_or_a_boolean(value, expected):
    assert load_config(None, [f"train.packing={value}"]).train.packing == expected
    with pytest.raises(ConfigError, match="train.packing"):
        load_config(None, ["train.packing=sometimes"])


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "--a.c", "x"]) == {"a": {"b": 1, "c": "x"}}
