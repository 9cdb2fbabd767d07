import re

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
    (["train.lrr=1"], "unknown key 'train.lrr'; did you mean 'train.lr'?"),
    (["train.zzzzzz=1"], "unknown key 'train.zzzzzz'; allowed: train.epochs"),
    (["train.epochs=three"], "train.epochs: expected an integer"),
    (["train.precision=fp17"], "train.precision: 'fp17' is not one of auto"),
    (["train.epochs=0"], "train.epochs: must be > 0"),
    (["data.test_fraction=1.5"], "data.test_fraction: must be in"),
    (["train=3"], "train: expected a section"),
    (["generate.candidates=5"], "generate.candidates: 5 needs generate.num_beams"),
    (["data.task=smiles2formula", "generate.verify=round_trip"], "generate.verify: round_trip reads outputs back"),
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


@pytest.mark.parametrize("override,message", [
    (["train.lr=.inf"], "train.lr: must be a finite number"),
    (["train.lr=nan"], "train.lr: must be a finite number"),
    (["train.lr=0"], "train.lr: must be > 0"),
    (["train.lr=-1e-4"], "train.lr: must be > 0"),
    (["train.weight_decay=.nan"], "train.weight_decay: must be a finite number"),
    (["train.max_grad_norm=-inf"], "train.max_grad_norm: must be a finite number"),
    (["model.lora_dropout=1.0"], "model.lora_dropout: must be in [0, 1)"),
    (["generate.num_beams=2.7"], "generate.num_beams: expected an integer, got 2.7"),
    (["generate.num_beams=3.0"], "generate.num_beams: expected an integer, got 3.0"),
    (["generate.candidates=1.5"], "generate.candidates: expected an integer"),
    (["generate.max_new_tokens=12.5"], "generate.max_new_tokens: expected an integer"),
    (["generate.batch_size=0"], "generate.batch_size: must be > 0"),
    (["train.batch_size=2.5"], "train.batch_size: expected an integer"),
    (["train.epochs=1.5"], "train.epochs: expected an integer"),
    (["train.epochs=true"], "train.epochs: expected an integer"),
    (["train.keep_checkpoints=-1"], "train.keep_checkpoints: must be >= 0"),
])
def test_bounds_one_line_naming_key_and_flag(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_config(None, override)
    assert str(err.value).startswith(f"argument {override[0]}: ") and "\n" not in str(err.value)


def test_round_trip_is_accepted_for_the_tasks_with_a_way_back():
    with pytest.raises(ConfigError, match="smiles2inchi, not for 'smiles2formula'; use vote or well_formed"):
        load_config(None, ["data.task=smiles2formula", "generate.verify=round_trip"])
    for task in ("smiles2iupac", "iupac2smiles", "smiles2inchi"):
        assert load_config(None, [f"data.task={task}", "generate.verify=round_trip"]).generate.verify == "round_trip"


def test_integers_and_finite_floats_still_accepted():
    cfg = load_config(None, ["generate.num_beams=3", "generate.candidates=3", "train.lr=2e-5",
                             "train.epochs=1_000", "train.weight_decay=0"])
    assert (cfg.generate.num_beams, cfg.generate.candidates, cfg.train.lr, cfg.train.epochs) == (3, 3, 2e-5, 1000)
    assert isinstance(cfg.train.weight_decay, float)


@pytest.mark.parametrize("override,expected", [
    (["train.lrr=1"], "'train.lr'"),
    (["data.lr=1"], "'train.lr'"),  # right name, wrong section
    (["--train.epohcs", "2"], "'train.epochs'"),
    (["--learning-rat", "1"], "'learning_rate'"),
    (["generate.num_beam=2"], "'generate.num_beams'"),
])
def test_unknown_key_did_you_mean(override, expected):
    with pytest.raises(ConfigError, match="did you mean") as err:
        load_config(None, override)
    assert expected in str(err.value)


def test_unknown_key_in_file_did_you_mean_with_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("out_dir: x\ntrain:\n  epochs: 2\n  lerning_rate: 1e-4\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == (f"{p}:4: unknown key 'train.lerning_rate'; did you mean 'learning_rate'?")


def test_hf_and_chemprop_aliases_on_the_command_line():
    cfg = load_config(None, [
        "--output_dir", "o", "--learning_rate=1e-4", "num_train_epochs=2", "--per_device_train_batch_size", "8",
        "--seed", "7", "--warmup_ratio", "0.1", "--weight_decay", "0.01", "--lr_scheduler_type", "linear",
        "--max_steps", "5", "--save_steps", "3", "--max_grad_norm", "0.5", "--per-device-eval-batch-size", "4",
    ])
    t = cfg.train
    assert cfg.out_dir == "o" and (t.lr, t.epochs, t.batch_size, t.seed) == (1e-4, 2, 8, 7)
    assert (t.warmup_ratio, t.weight_decay, t.lr_schedule, t.max_steps) == (0.1, 0.01, "linear", 5)
    assert (t.save_every_steps, t.max_grad_norm, cfg.generate.batch_size) == (3, 0.5, 4)
    # the last spelling of one key wins, whatever the spelling
    assert load_config(None, ["--output-dir", "a", "out_dir=b", "--save_dir=c"]).out_dir == "c"


def test_hf_aliases_in_the_file(tmp_path):
    p = tmp_path / "hf.yaml"
    p.write_text("output_dir: o\nlearning_rate: 0.001\nnum_train_epochs: 4\n"
                 "train:\n  per_device_train_batch_size: 8\nmodel: tiny\n")
    cfg = load_config(p)
    assert (cfg.out_dir, cfg.train.lr, cfg.train.epochs, cfg.train.batch_size, cfg.model.name) == \
        ("o", 1e-3, 4, 8, "tiny")
    p.write_text("out_dir: a\noutput_dir: b\n")
    with pytest.raises(ConfigError, match=r"hf.yaml:2: output_dir: set twice \(also at .*hf.yaml:1\)"):
        load_config(p)
    # an alias only works inside its own section
    p.write_text("data:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"hf.yaml:2: unknown key 'data.learning_rate'"):
        load_config(p)


def test_bad_value_in_file_names_file_and_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("out_dir: x\n\ntrain:\n  epochs: 2\n  lr: .inf\ngenerate:\n  num_beams: 2.7\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}:5: train.lr: must be a finite number, got inf"
    # the same key fixed on the command line: the next error is in the file, at its line
    with pytest.raises(ConfigError) as err:
        load_config(p, ["train.lr=1e-4"])
    assert str(err.value) == f"{p}:7: generate.num_beams: expected an integer, got 2.7"
    # a bad value from the command line names the option, not the file
    with pytest.raises(ConfigError) as err:
        load_config(p, ["--lr", "1e-4", "--num_beams", "0"])
    assert str(err.value) == "option --num_beams: generate.num_beams: must be > 0, got 0"
    p.write_text("train: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml:1: train: expected a section"):
        load_config(p)


def test_override_values_read_as_yaml_scalars_but_text_stays_text():
    cfg = load_config(None, ["--data.instruction", "Name it: now", "data.mix=# not a comment",
                             "data.train_size=null"])
    assert (cfg.data.instruction, cfg.data.mix, cfg.data.train_size) == ("Name it: now", "# not a comment", None)
    with pytest.raises(ConfigError, match="option --lr needs a value"):
        load_config(None, ["--lr", "--epochs", "3"])


def test_empty_section_in_overrides_keeps_the_file_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 5\n")
    assert load_config(p, {"train": {}, "model": {"method": "lora"}}).train.epochs == 5
    assert parse_overrides(["--data-path", "d.csv", "--learning_rate=0.5"]) == {"data": {"path": "d.csv"},
                                                                               "train": {"lr": 0.5}}


def test_every_shipped_config_loads_and_each_task_config_trains_on_its_shipped_data():
    from pathlib import Path

    from seqtune.experiments.sweep_spec import expand, load_sweep

    root = Path(__file__).resolve().parents[1] / "configs"
    runs = [p for p in sorted(root.rglob("*.yaml")) if p.parent.name != "paper"]
    assert len(runs) >= 10
    for path in runs:
        cfg = load_config(path)
        # A verifying config has beams to choose among (load_config already refuses candidates > num_beams).
        assert cfg.generate.verify == "none" or cfg.generate.candidates > 1, path
    for path in sorted((root / "paper").glob("*.yaml")):
        assert expand(load_sweep(path)), path  # every run of the sweep validated
    tasks = {path: load_config(path) for path in sorted((root / "tasks").glob("*_cpu.yaml"))}
    rerankers = {cfg.generate.rerank_model for cfg in tasks.values()}
    for path, cfg in tasks.items():
        # Named for its task, or the reranker of the task config whose generate.rerank_model it writes.
        if path.name.endswith("_reranker_cpu.yaml"):
            assert f"{cfg.out_dir}/model" in rerankers, f"{path.name}: no task config reranks with it"
        else:
            assert path.name == f"{cfg.data.task}_cpu.yaml"
        assert (root.parent / cfg.data.path).is_dir(), f"{path.name}: {cfg.data.path} is not shipped"
