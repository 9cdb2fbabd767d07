"""`--help` and `--print-config` on the config commands, and README's generated config reference."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
import yaml

from seqtune.cli import _config, main
from seqtune.config import RunConfig, config_keys, load_config
from seqtune.config_help import (
    README,
    key_docs,
    readme_section,
    render_config_reference,
    render_help,
)
from seqtune.config_sources import ALIASES, canonical_key


@pytest.mark.parametrize("command", ["run", "train", "check"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_and_lists_every_key_with_type_default_meaning(capsys, command, flag):
    assert main([command, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: seqtune {command} ")
    for doc in key_docs():
        line = f"  {doc.key} ({doc.type}) = {doc.default}"
        assert line in out.splitlines(), line
        # the line after the key's line is the start of its meaning
        after = out.splitlines()[out.splitlines().index(line) + 1]
        assert after.strip() and doc.meaning.startswith(after.strip())
    assert "  train.lr (float) = 0.0005" in out and "--print-config" in out
    assert "learning_rate" in out and "per_device_train_batch_size" in out


def test_help_after_a_config_and_overrides_still_helps(capsys, tmp_path):
    assert main(["run", "configs/demo.yaml", "train.lr=1e-4", "--help"]) == 0
    assert "train.epochs (int) = 3" in capsys.readouterr().out


def test_every_key_is_documented_once_in_declaration_order():
    docs = key_docs()
    assert [d.key for d in docs] == config_keys()
    undocumented = [d.key for d in docs if not d.meaning]
    assert not undocumented, f"add a comment above or beside these fields in config.py: {undocumented}"
    by_key = {d.key: d for d in docs}
    assert (by_key["train.lr"].type, by_key["train.lr"].default) == ("float", "0.0005")
    assert by_key["data.train_size"].type == "int | null" and by_key["data.train_size"].default == "null"
    assert by_key["model.method"].type == "full | lora"
    assert by_key["train.packing"].type == "bool | auto"
    assert by_key["data.mix"].default == "''"
    assert by_key["train.micro_batch_tokens"].meaning.startswith("Token budget of one forward pass")
    assert by_key["generate.num_beams"].meaning == "Beam search width (1 = greedy)."
    # a default as rendered reads back as the default
    defaults = dataclasses.asdict(RunConfig())
    for d in docs:
        node = defaults
        for part in d.key.split("."):
            node = node[part]
        assert yaml.safe_load(d.default) == node, d.key


def test_help_renders_without_the_readme():
    text = render_help("check", "Validate.")
    assert text.splitlines()[2] == "Validate." and "generate.candidates (int) = 1" in text


def test_print_config_round_trips_through_run(capsys, tmp_path):
    src = tmp_path / "c.yaml"
    src.write_text("out_dir: x\nlearning_rate: 0.001\ntrain:\n  epochs: 2\nmodel:\n  method: lora\n")
    overrides = ["--num_train_epochs", "5", "data.instruction=Name it: now", "--data.train_size=100",
                 "data.mix=", "data.test_path=null", "--model", "null_model"]
    assert main(["run", str(src), *overrides, "--print-config"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "resolved.yaml"
    saved.write_text(printed)
    expected = load_config(src, overrides)
    assert expected.train.epochs == 5 and expected.train.lr == 1e-3 and expected.model.name == "null_model"
    # the printed file, given to `run`, is the same config, and prints the same text again
    assert _config([str(saved)]) == expected
    assert main(["run", str(saved), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    assert not (tmp_path / "x").exists()
    assert yaml.safe_load(printed)["data"]["instruction"] == "Name it: now"


def test_print_config_of_a_bad_config_is_the_usual_one_line_error(capsys):
    assert main(["run", "--learning_rate", "inf", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "seqtune: error: option --learning_rate: train.lr: must be a finite number, got 'inf'"


def test_readme_config_reference_matches_the_dataclasses():
    section = readme_section(README.read_text(encoding="utf-8"))
    assert section, "README lost its config-reference markers"
    assert section == render_config_reference(), "README is stale: run `python -m seqtune.config_help`"
    for key in config_keys():
        assert f"| `{key}` |" in section


def test_readme_check_command_reports_staleness(tmp_path, monkeypatch):
    import seqtune.config_help as config_help

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{config_help.BEGIN}\n| old |\n{config_help.END}\n\nafter\n")
    monkeypatch.setattr(config_help, "README", readme)
    assert config_help.main(["--check"]) == 1
    assert config_help.main([]) == 0
    assert config_help.main(["--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith("\n\nafter\n") and "| `train.lr` |" in text


def test_every_alias_points_at_a_real_key():
    keys = set(config_keys())
    assert {canonical_key(a) for a in ALIASES} <= keys
    assert {canonical_key(a.replace("_", "-")) for a in ALIASES} <= keys
    assert not set(ALIASES) & keys  # an alias never hides a real key


def test_help_through_the_installed_command():
    r = subprocess.run([sys.executable, "-m", "seqtune", "train", "--help"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "SEQTUNE_ALLOCATOR": "system"})
    assert r.returncode == 0 and r.stderr == ""
    assert re.search(r"^  generate\.num_beams \(int\) = 1$", r.stdout, re.M)


def test_hf_spellings_of_the_newer_train_keys():
    cfg = load_config(None, ["--gradient_checkpointing", "true", "--logging_steps", "25",
                             "--metric_for_best_model", "eval_loss", "--report_to", "none"])
    assert cfg.train.gradient_checkpointing is True and cfg.train.log_every == 25
    assert cfg.train.select_metric == "eval_loss" and cfg.train.logger == "none"
