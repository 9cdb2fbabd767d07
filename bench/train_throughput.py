"""Training throughput: the paper's recipe and seqtune's path on the same model and data, in one process.

paper   : fp32, batch 4, right-padded batches, logits for every position, stock AdamW,
          transformers' default attention (sdpa)
seqtune : the defaults of `seqtune train`: bf16 autocast where fast, packing on GPUs (padded
          batches on CPUs, the shared prompt prefix computed once where it pays), logits only
          at completion positions, fused AdamW, the attention kernel of train.attention=auto,
          at the batch sizes given by --batches

The recipes take turns (--repeats rounds, each a fresh optimiser, warm-up steps untimed) and
the median of the rounds is reported, so a burst of load on a shared machine hits all of
them alike. Prints examples/s, tokens/s, MFU (6 * N * tokens/s over the best measured bf16
matmul rate; n/a where that exceeds 100 %), peak memory and the ratio to the paper recipe. With --quality N both recipes train on
the same N examples from the real weights and the eval loss on held-out pairs is compared.

Like the `seqtune` command, the script re-executes itself with tcmalloc preloaded where it is
installed (src/seqtune/runtime.py), so both recipes run with it; SEQTUNE_ALLOCATOR=system
measures both with glibc's malloc instead.

  python bench/train_throughput.py --model smollm2-135m --steps 6
  python bench/train_throughput.py --model opt-125m --device cuda --batches 64,256
  python bench/train_throughput.py --model tiny          # anywhere, in seconds
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
if __name__ == "__main__":
    from seqtune.runtime import use_fast_allocator

    use_fast_allocator(sys.argv)

import statistics  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

from seqtune.config import DataConfig, TrainConfig  # noqa: E402
from seqtune.data import load_splits  # noqa: E402
from seqtune.prompts import encode_example, get_format  # noqa: E402
from seqtune.runtime import loaded_allocator  # noqa: E402
from seqtune.training import step  # noqa: E402
from seqtune.training.batching import Example  # noqa: E402
from seqtune.training.speed import SpeedPlan, resolve_speed_plan, supports_logits_to_keep  # noqa: E402

ARCHS = {
    # name: (config class, kwargs) at the real sizes, random weights
    "opt-125m": ("OPTConfig", dict(hidden_size=768, num_hidden_layers=12, ffn_dim=3072, num_attention_heads=12,
                                   word_embed_proj_dim=768, vocab_size=50272)),
    "opt-350m": ("OPTConfig", dict(hidden_size=1024, num_hidden_layers=24, ffn_dim=4096, num_attention_heads=16,
                                   word_embed_proj_dim=512, vocab_size=50272, do_layer_norm_before=False)),
    "opt-1.3b": ("OPTConfig", dict(hidden_size=2048, num_hidden_layers=24, ffn_dim=8192, num_attention_heads=32,
                                   word_embed_proj_dim=2048, vocab_size=50272)),
    "smollm2-arch": ("LlamaConfig", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                         tie_word_embeddings=True, rope_theta=100000.0)),
    "tiny": ("LlamaConfig", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True)),
}


def build_model(name: str, tokenizer: str = "smollm2-135m"):
    """`name` at random weights (ARCHS) or loaded; `tokenizer` serves the random-weight ones (a
    saved tokenizer folder works where the 98 MB SmolLM2 GGUF cannot travel, e.g. to a GPU box)."""
    import transformers

    from seqtune.config import ModelConfig
    from seqtune.modeling import load_model, load_tokenizer

    if name in ARCHS:
        cls, kw = ARCHS[name]
        torch.manual_seed(0)
        cfg = getattr(transformers, cls)(max_position_embeddings=2048, **kw)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
        return model, load_tokenizer(tokenizer)  # SmolLM2 ids fit every vocabulary above
    return load_model(ModelConfig(name=name))


def bf16_peak(device: torch.device, sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 3,
              seconds: float = 0.2) -> float:
    """Measured bf16 matmul FLOP/s on this device (the MFU denominator): the best over square
    sizes and repeated timings of about `seconds` each. A single timing of ten 1024 products
    (some 30 ms) read 0.46 TFLOP/s on a CPU whose 1k-4k matmuls run at 0.76-0.81, which put
    MFUs at 92-127 %; a window that short is at the mercy of any moment of load, and the best
    of several is the nearest to what the hardware does."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        for _ in range(2):  # warm-up; the second also sizes the timed runs
            _sync(device)
            t = time.perf_counter()
            a @ b
            _sync(device)
            one = max(time.perf_counter() - t, 1e-9)
        reps = max(1, round(seconds / one))
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            _sync(device)
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def mfu_pct(n_params: int, tokens_per_s: float, peak: float) -> float | None:
    """6 * N * tokens/s as a share of the measured peak, or None where that exceeds 100 %.
    Above 100 % is no utilisation but a measurement error: the probe read low, or 6 * N counts
    work this path skips (the head at prompt positions, a shared prefix computed once), which
    for a small model with a large vocabulary is most of N. A clamped 100 would look like a
    measurement; no figure is printed instead."""
    pct = 100 * 6 * n_params * tokens_per_s / peak
    return pct if pct <= 100 else None


def paper_loss(model, batch, _keep_logits: bool = False):
    """The stock recipe: full logits, transformers' own shifted cross-entropy over the labels
    (a step.LossFn; the stock recipe never narrows the logits)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"]
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")


PAPER_PLAN = SpeedPlan(packing=False, shared_prefix=False, attention=None, keep_logits=False, amp=None)


def run_recipe(name, model, examples, batch_size, steps, warmup, device, paper: bool, lr: float, offset: int = 0,
               overrides: dict | None = None):
    """Time `steps` optimiser steps of a recipe, after `warmup` untimed ones. Both recipes run
    seqtune's step (training/step.py); the paper recipe with its own loss, fp32, padded batches,
    the model's kernel and stock AdamW."""
    cfg = TrainConfig(lr=lr, batch_size=batch_size, precision="fp32" if paper else "auto",
                      **({} if paper else overrides or {}))
    model.set_attn_implementation("sdpa")  # transformers' default, the stock loop's kernel
    # The seqtune recipe: exactly what `train` decides for this model and device.
    plan = PAPER_PLAN if paper else resolve_speed_plan(cfg, model, examples, 0, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr) if paper \
        else step.make_optimizer(model, cfg)
    scaler = step.make_scaler(plan, device)  # fp16 (auto on a GPU without bf16) scales the loss
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n_ex = n_tok = 0
    t_start = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t_start = time.perf_counter()
            n_ex = n_tok = 0
        lo = ((offset + i) * batch_size) % max(len(examples) - batch_size + 1, 1)
        chunk = examples[lo:lo + batch_size]
        step.train_step(model, opt, chunk, plan, cfg, pad_id=0, device=device,
                        loss_fn=paper_loss if paper else None, scaler=scaler)
        n_ex += len(chunk)
        n_tok += sum(len(e) for e in chunk)
    _sync(device)
    sec = time.perf_counter() - t_start
    mem = (torch.cuda.max_memory_allocated() / 2**30) if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"recipe": name, "batch": batch_size, "bf16": plan.amp is not None, "packing": plan.packing,
            "head_only_completion": plan.keep_logits, "shared_prefix": plan.shared_prefix,
            "attention": plan.attention or model.config._attn_implementation,
            "examples_per_s": n_ex / sec, "tokens_per_s": n_tok / sec, "peak_mem_gib": mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help=f"smollm2-135m (real weights) or {', '.join(ARCHS)}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokenizer", default="smollm2-135m", help="tokenizer of the random-weight models")
    ap.add_argument("--data", default="data/smiles2iupac_demo")
    ap.add_argument("--batches", default="4,32", help="seqtune batch sizes to time")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per recipe and round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the median is reported")
    ap.add_argument("--format", default="instruct", help="prompt format of the examples")
    ap.add_argument("--quality", type=int, default=0, help="train both recipes on this many examples, compare eval loss")
    ap.add_argument("--fast-batch", type=int, default=4, help="seqtune's batch in --quality mode (default: the paper's)")
    ap.add_argument("--fast-lr", type=float, default=2e-5, help="seqtune's lr in --quality mode (default: the paper's)")
    ap.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrainConfig settings of the seqtune recipe, e.g. shared_prefix=false packing=true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    known, overrides = {f.name for f in dataclasses.fields(TrainConfig)}, {}
    for kv in a.train:
        key, eq, value = kv.partition("=")
        if not eq or key not in known:
            ap.error(f"--train: {kv!r} is not KEY=VALUE with KEY a train setting (e.g. shared_prefix=false)")
        overrides[key] = yaml.safe_load(value)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    device = torch.device(a.device)
    model, tok = build_model(a.model, a.tokenizer)
    model.to(device)
    splits = load_splits(DataConfig(path=a.data, val_size=200))
    fmt = get_format(a.format)
    instr = DataConfig().instruction

    def enc(pairs):
        return [Example(*map(tuple, encode_example(tok, fmt, p.input, p.output, instr))) for p in pairs]

    train_ex, val_ex = enc(splits.train), enc(splits.val)
    n_params = sum(p.numel() for p in model.parameters())
    peak = bf16_peak(device)
    print(f"device {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"allocator {loaded_allocator()}, model {a.model} ({n_params / 1e6:.1f}M params), measured bf16 peak "
          f"{peak / 1e12:.2f} TFLOP/s, {a.format} format, mean example {sum(map(len, train_ex)) / len(train_ex):.0f} "
          f"tokens", flush=True)
    recipes = [(True, 4)] + [(False, int(b)) for b in a.batches.split(",")]
    base_state = copy.deepcopy(model.state_dict())
    rounds: list[list[dict]] = [[] for _ in recipes]
    for rep in range(a.repeats):
        for k, (paper, bs) in enumerate(recipes):
            model.load_state_dict(base_state)
            r = run_recipe("paper" if paper else "seqtune", model, train_ex, bs, a.steps, a.warmup, device, paper,
                           2e-5, offset=rep * (a.steps + a.warmup), overrides=overrides)
            rounds[k].append(r)
            print(f"  round {rep + 1}: {r['recipe']} batch {bs}: {r['examples_per_s']:.2f} examples/s", flush=True)
    rows = []
    for runs in rounds:
        r = dict(runs[0])
        for key in ("examples_per_s", "tokens_per_s"):
            r[key] = statistics.median(x[key] for x in runs)
        r["rounds_examples_per_s"] = [round(x["examples_per_s"], 3) for x in runs]
        r["peak_mem_gib"] = max(x["peak_mem_gib"] for x in runs)
        r["mfu_pct"] = mfu_pct(n_params, r["tokens_per_s"], peak)
        rows.append(r)
    ref = rows[0]["examples_per_s"]
    print(f"{'recipe':<9}{'batch':>6}{'bf16':>6}{'pack':>6}{'attn':>7}{'prefix':>7}{'ex/s':>9}{'tok/s':>9}{'MFU%':>7}"
          f"{'mem GiB':>9}{'x paper':>9}")
    for r in rows:
        r["speedup"] = r["examples_per_s"] / ref
        print(f"{r['recipe']:<9}{r['batch']:>6}{str(r['bf16']):>6}{str(r['packing']):>6}{r['attention']:>7}{str(r['shared_prefix']):>7}"
              f"{r['examples_per_s']:>9.2f}{r['tokens_per_s']:>9.0f}{_mfu_cell(r['mfu_pct'])}{r['peak_mem_gib']:>9.2f}"
              f"{r['speedup']:>9.2f}")
    if any(r["mfu_pct"] is None for r in rows):
        print("MFU n/a: 6 * N * tokens/s exceeds the measured peak (see mfu_pct in this script)")
    out = {"device": str(device), "model": a.model, "allocator": loaded_allocator(), "format": a.format,
           "n_params": n_params, "bf16_peak_flops": peak, "rows": rows}
    if a.quality:
        out["quality"] = quality(model, base_state, train_ex[: a.quality], val_ex, device, a.fast_lr, a.fast_batch)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


def _mfu_cell(pct: float | None) -> str:
    return f"{pct:>7.2f}" if pct is not None else f"{'n/a':>7}"


def quality(model, base_state, examples, val_ex, device, fast_lr, fast_batch):
    """Eval loss after the same examples: the paper recipe, seqtune's path, and as the noise
    scale the paper recipe again on the same examples in another order."""
    import random

    shuffled = random.Random(1).sample(examples, len(examples))
    res = {}
    for name, paper, bs, lr, exs in (("paper", True, 4, 2e-5, examples), ("seqtune", False, fast_batch, fast_lr, examples),
                                     ("paper, other order", True, 4, 2e-5, shuffled)):
        model.load_state_dict(base_state)
        steps = len(exs) // bs
        t = time.perf_counter()
        run_recipe(name, model, exs, bs, steps, 0, device, paper, lr)
        sec = time.perf_counter() - t
        # All scored the same way: fp32, stock attention, every held-out pair.
        model.set_attn_implementation("sdpa")
        plan = dataclasses.replace(PAPER_PLAN, keep_logits=supports_logits_to_keep(model))
        loss = step.evaluate_loss(model, val_ex, plan, 0, device)
        res[name] = {"batch": bs, "lr": lr, "examples": steps * bs, "eval_loss": loss, "seconds": sec}
        print(f"quality {name:<19} batch {bs:<4} lr {lr:<8g} {steps * bs} examples in {sec:.0f} s: eval loss {loss:.4f}",
              flush=True)
    return res


if __name__ == "__main__":
    main()
