"""Evaluation hygiene: per-epoch decoding and epoch selection on the validation split, the test
split decoded once at the end on the selected model, 95 % bootstrap intervals for every score,
the rules baseline named for what it is and an independent one beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_train_script import PAIRS

from seqtune import pipeline
from seqtune.config import load_config
from seqtune.errors import ConfigError
from seqtune.metrics import lower_is_better, selection_metric
from seqtune.stats import RESAMPLES, SEED, intervals
from seqtune.training import loop

TRAIN, VAL, TEST = PAIRS[:12], PAIRS[12:16], PAIRS[16:20]


def _data(folder: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        if name in splits:
            (folder / f"{name}.jsonl").write_text("".join(json.dumps({"input": a, "output": b}) + "\n"
                                                          for a, b in pairs))
    return folder


def _config(tmp_path: Path, model_dir: Path, data: Path, **train: object) -> object:
    return load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": str(data), "task": "toy", "dedupe": False},
        "model": {"name": str(model_dir), "format": "plain"},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 4, "precision": "fp32", "logger": "none",
                  "progress": False, **train},
        "generate": {"max_new_tokens": 4},
    })


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class _Spy:
    """Wraps the pipeline's decode function and the training loop: records, in order, which split
    each decode read and when training started and ended."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        self.models: dict[int, dict] = {}
        real_decode, real_train = pipeline.decode_rows, loop.train

        def decode(model, tok, fmt, task, inputs, *args, **kwargs):
            split = {frozenset(a for a, _ in s): n for n, s in (("val", VAL), ("test", TEST))}.get(frozenset(inputs))
            self.events.append(split or f"other:{inputs}")
            self.models[len(self.events)] = {n: p.detach().clone() for n, p in model.named_parameters()}
            return self.after_decode(split, *real_decode(model, tok, fmt, task, inputs, *args, **kwargs))

        def train(*args, **kwargs):
            self.events.append("train-start")
            state = real_train(*args, **kwargs)
            self.events.append("train-end")
            return state

        monkeypatch.setattr(pipeline, "decode_rows", decode)
        monkeypatch.setattr(loop, "train", train)

    def after_decode(self, split: str | None, summary: dict, rows: list) -> tuple[dict, list]:
        return summary, rows


@pytest.mark.parametrize("evaluate_base", [False, True])
def test_epochs_decode_val_and_the_test_split_once_at_the_end(tmp_path, tiny_llama_dir, monkeypatch, evaluate_base):
    spy = _Spy(monkeypatch)
    cfg = _config(tmp_path, tiny_llama_dir, _data(tmp_path / "data"))
    cfg.evaluate_base = evaluate_base
    result = pipeline.run_pipeline(cfg)
    base = ["test"] if evaluate_base else []  # the untrained model, scored before any training
    assert spy.events == [*base, "train-start", "val", "val", "train-end", "test"]
    run = tmp_path / "run"
    for epoch in (1, 2):
        assert [r["input"] for r in _jsonl(run / "predictions" / f"epoch-{epoch}.jsonl")] == [a for a, _ in VAL]
    assert [r["input"] for r in _jsonl(run / "predictions" / "test.jsonl")] == [a for a, _ in TEST]
    records = _jsonl(run / "epochs.jsonl")
    assert all("val_exact_match" in r and "exact_match" not in r and "val_ci95" in r for r in records)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selection"] == {"select": "last", "epoch": 2}
    assert metrics["tuned"]["exact_match"] == result["tuned"]["exact_match"]
    assert metrics["intervals"]["resamples"] == RESAMPLES and metrics["intervals"]["level"] == 0.95
    # every score of the tuned (and base) model has its interval, and the interval holds the score
    for block in [metrics["tuned"], *([metrics["base"]] if evaluate_base else [])]:
        scores = {k for k, v in block.items() if isinstance(v, float) and not k.endswith("_loss")}
        assert scores == set(block["ci95"]) >= {"exact_match", "edit_distance"}
        for k, (lo, hi) in block["ci95"].items():
            assert lo <= block[k] <= hi, k
    assert not (run / "checkpoints" / "best").exists()  # select: last keeps no copy


def test_select_best_ends_with_the_better_epochs_weights(tmp_path, tiny_llama_dir, monkeypatch):
    spy = _Spy(monkeypatch)
    made_up = iter([10.0, 50.0, 20.0])  # validation exact match of epochs 1, 2, 3: epoch 2 is best

    def after_decode(split, summary, rows):
        return ({**summary, "exact_match": next(made_up)} if split == "val" else summary), rows

    spy.after_decode = after_decode
    cfg = _config(tmp_path, tiny_llama_dir, _data(tmp_path / "data"), epochs=3, select="best")
    result = pipeline.run_pipeline(cfg)
    assert spy.events == ["train-start", "val", "val", "val", "train-end", "test"]
    assert result["selection"] == {"select": "best", "epoch": 2, "metric": "exact_match", "split": "val",
                                   "value": 50.0, "lower_is_better": False}
    epoch2, epoch3, tested = spy.models[3], spy.models[4], spy.models[6]  # events 3, 4: epochs 2, 3; 6: test
    assert any(not bool((epoch2[n] == epoch3[n]).all()) for n in epoch2)  # epoch 3 did change the weights
    for n, w in epoch2.items():
        assert bool((tested[n] == w).all()), n  # the test split saw epoch 2's weights ...
    from safetensors.torch import load_file

    exported = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    for n, w in exported.items():
        assert bool((w == epoch2[n]).all()), n  # ... and so does model/
    assert json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())["epoch"] == 2
    # the chosen epoch's losses lead the tuned scores, as the last epoch's did before
    records = _jsonl(tmp_path / "run" / "epochs.jsonl")
    assert result["tuned"]["eval_loss"] == records[1]["eval_loss"]


class _Stop(Exception):
    pass


def test_select_best_goes_on_comparing_after_a_resume(tmp_path):
    """Stopped inside epoch 2's evaluation and resumed: the best epoch (2) and its weights are
    those of an uninterrupted run."""
    import torch
    from tiny import make_model, make_tokenizer

    from seqtune.config import TrainConfig
    from seqtune.prompts import encode_example, get_format
    from seqtune.training.batching import Example

    tok = make_tokenizer("llama")
    examples = [Example(*map(tuple, encode_example(tok, get_format("plain"), a, b, ""))) for a, b in PAIRS]
    cfg = TrainConfig(epochs=3, lr=1e-3, batch_size=4, precision="fp32", logger="none", progress=False,
                      select="best")
    made_up = {1: 5.0, 2: 9.0, 3: 1.0}

    def hook(stop_at: int | None):
        def on_epoch_end(epoch: int, _model: object) -> dict:
            if epoch == stop_at:
                raise _Stop
            return {"val_exact_match": made_up[epoch]}
        return on_epoch_end

    def run(out: Path, stop_at: int | None) -> tuple[object, dict]:
        model = make_model("llama", len(tok), seed=3)
        state = loop.train(model, examples[:16], examples[16:], cfg, out, tok.pad_token_id or 0,
                           on_epoch_end=hook(stop_at))
        return state, {n: p.detach().clone() for n, p in model.named_parameters()}

    ref_state, ref_weights = run(tmp_path / "ref", None)
    with pytest.raises(_Stop):
        run(tmp_path / "cut", 2)
    state, weights = run(tmp_path / "cut", None)
    assert ref_state.best["epoch"] == state.best["epoch"] == 2 and state.best["value"] == 9.0
    for n, w in ref_weights.items():
        torch.testing.assert_close(weights[n], w, rtol=0, atol=0)
    kept = torch.load(tmp_path / "cut" / "checkpoints" / "best" / "model.pt", weights_only=True)
    assert all(torch.equal(kept[n], weights[n]) for n in kept)


def test_select_best_by_eval_loss_without_decoding(tmp_path, tiny_llama_dir):
    cfg = _config(tmp_path, tiny_llama_dir, _data(tmp_path / "data"), epochs=3, select="best", eval_generate=False)
    result = pipeline.run_pipeline(cfg)
    losses = [r["eval_loss"] for r in _jsonl(tmp_path / "run" / "epochs.jsonl")]
    best = min(range(3), key=lambda i: (losses[i], -i))
    assert result["selection"]["metric"] == "eval_loss" and result["selection"]["epoch"] == best + 1
    assert result["selection"]["value"] == losses[best] and result["selection"]["lower_is_better"] is True


def test_select_best_is_refused_before_training_when_it_cannot_rank(tmp_path, tiny_llama_dir):
    no_val = _data(tmp_path / "noval", ("train", "test"))
    with pytest.raises(ConfigError, match="no validation split"):
        pipeline.run_pipeline(_config(tmp_path, tiny_llama_dir, no_val, select="best"))
    with pytest.raises(ConfigError, match="'same_molecule_pct' is not a score of toy"):
        pipeline.run_pipeline(_config(tmp_path, tiny_llama_dir, _data(tmp_path / "data"), select="best",
                                      select_metric="same_molecule_pct"))
    assert not (tmp_path / "run" / "epochs.jsonl").exists()
    with pytest.raises(ConfigError, match="train.select_metric: exact_match is a decoded score"):
        load_config(None, {"train": {"select": "best", "select_metric": "exact_match", "eval_generate": False}})


def test_selection_metric_and_direction():
    assert selection_metric("auto", eval_generate=True) == "exact_match"
    assert selection_metric("auto", eval_generate=False) == "eval_loss"
    assert selection_metric("val_same_molecule_pct", eval_generate=True) == "same_molecule_pct"
    assert lower_is_better("eval_loss") and lower_is_better("edit_distance") and lower_is_better("val_edit_distance")
    assert lower_is_better("mean_element_count_error")
    assert not lower_is_better("exact_match") and not lower_is_better("top_beam_same_molecule_pct")


def test_interval_of_all_correct_is_a_point():
    rows = [{"exact": True, "edit_distance": 0.0}] * 50
    assert intervals({"n": 50, "exact_match": 100.0, "edit_distance": 0.0}, rows) == {
        "exact_match": [100.0, 100.0], "edit_distance": [0.0, 0.0]}


def test_interval_of_a_known_vector_is_the_percentile_bootstrap():
    hits = [True] * 7 + [False] * 13
    rows = [{"exact": h} for h in hits]
    lo, hi = intervals({"exact_match": 35.0}, rows)["exact_match"]
    # The same computation by hand: 1,000 resamples of the 20 examples with the same seed.
    values = 100.0 * np.array(hits, dtype=float)
    draws = np.random.default_rng(SEED).integers(0, len(values), (RESAMPLES, len(values)))
    want = np.percentile(values[draws].mean(axis=1), [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(want), abs=1e-12)
    assert lo < 35.0 < hi and 10 < lo and hi < 60  # about +-21 points on 20 examples
    assert intervals({"exact_match": 35.0}, rows) == {"exact_match": [lo, hi]}  # fixed seed: the same again


def test_intervals_skip_missing_values_and_scores_that_are_not_row_means():
    rows = [{"same_molecule": True, "tanimoto": 1.0}, {"same_molecule": False, "tanimoto": None},
            {"same_molecule": False, "tanimoto": 0.5}]
    found = intervals({"n": 3, "same_molecule_pct": 100 / 3, "mean_tanimoto": 0.75, "verified_pct": 50.0,
                       "coverage_pct": 12.0}, rows)
    assert set(found) == {"same_molecule_pct", "mean_tanimoto"}  # no rows behind the last two
    lo, hi = found["mean_tanimoto"]
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0
    assert intervals({"mean_tanimoto": 0.9}, rows) == {}  # a summary the rows do not give: no interval


def test_results_show_intervals_and_the_split_of_each_row(tmp_path):
    from test_report import write_fake_run

    from seqtune.experiments.plots import error_bars
    from seqtune.experiments.results import collect, final_table, results_markdown
    from seqtune.io import atomic_write_json, atomic_write_jsonl

    run = write_fake_run(tmp_path / "r", epochs=2, baseline={"n": 12, "exact_match": 100.0, "edit_distance": 0.0})
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["tuned"]["ci95"] = {"exact_match": [20.0, 45.5], "edit_distance": [0.5, 0.7]}
    metrics["lookup"] = {"n": 3, "exact_match": 33.3, "same_molecule_pct": 100.0, "coverage_pct": 25.0,
                         "ci95": {"exact_match": [0.0, 100.0]}, "source": "PubChem"}
    atomic_write_json(run / "metrics.json", metrics)
    records = _jsonl(run / "epochs.jsonl")
    # epoch 2 as this version writes it (val_ keys), epoch 1 as an older run did (bare keys: the test split)
    records[1] = {**{k: v for k, v in records[1].items() if k not in ("exact_match", "edit_distance")},
                  "val_exact_match": 40.0, "val_edit_distance": 0.4, "val_ci95": {"exact_match": [30.0, 50.0]}}
    atomic_write_jsonl(run / "epochs.jsonl", records)
    df, keys = collect(run)
    epochs = df[df["kind"] == "epoch"].set_index("epoch")
    assert epochs.loc[1, "split"] == "test" and epochs.loc[2, "split"] == "val"
    assert epochs.loc[2, "exact_match"] == 40.0 and epochs.loc[2, "exact_match_ci_high"] == 50.0
    final = final_table(df, keys).iloc[0]
    assert final["exact_match_ci_low"] == 20.0 and final["lookup_coverage_pct"] == 25.0
    md = results_markdown(df, keys)
    assert f"| {final['exact_match']:.1f} [20.0, 45.5] |" in md and "rules (label source)" in md
    assert "lookup_same_molecule_pct" in md and "| 40.0 [30.0, 50.0] |" in md and "| val |" in md
    finals = df[df["kind"] == "final"]
    bars = error_bars(finals, "train_examples", "exact_match", finals.groupby("train_examples")["exact_match"].mean())
    assert bars == [[pytest.approx(final["exact_match"] - 20.0)], [pytest.approx(45.5 - final["exact_match"])]]


def test_pubchem_lookup_scores_the_molecules_it_covers():
    pytest.importorskip("rdkit")
    pytest.importorskip("chemicals")
    from seqtune.chem import opsin
    from seqtune.data import Pair

    if not opsin.java_available():
        pytest.skip("no Java runtime for OPSIN")
    pairs = [Pair("CCO", "ethanol", "t:1"), Pair("CC(C)(C)c1ccc(-c2cc3ccccc3[nH]2)cc1C#CCCCCCCCC", "x", "t:2")]
    summary, rows = pipeline.score_lookup("smiles2iupac", pairs)
    assert summary["coverage_pct"] == 50.0 and summary["n"] == 1 and "PubChem" in summary["source"]
    assert summary["same_molecule_pct"] == 100.0 and summary["ci95"]["same_molecule_pct"] == [100.0, 100.0]
    assert [r["covered"] for r in rows] == [True, False] and rows[0]["prediction"] == "ethanol"
    rules, _ = pipeline.score_baseline("smiles2iupac", pairs[:1])
    assert "label source" in rules["role"] and rules["ci95"]["exact_match"] == [100.0, 100.0]
    assert pipeline.score_lookup("smiles2formula", pairs) is None  # no independent source for that task
