"""Decoding throughput: one example at a time vs seqtune's batched decoding, in one process.

Both decode the same SMILES->IUPAC prompts for exactly --new-tokens tokens (EOS suppressed
until then, so the work is identical), greedy and beam search. Prints sequences/s and the ratio.

  python bench/decode_throughput.py --model smollm2-135m --n 64 --batch 32
  python bench/decode_throughput.py --model opt-125m --device cuda --n 1024 --batch 256
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
if __name__ == "__main__":
    from seqtune.runtime import use_fast_allocator

    use_fast_allocator(sys.argv)  # as the `seqtune` command does; SEQTUNE_ALLOCATOR=system to compare

import torch  # noqa: E402
from train_throughput import build_model  # noqa: E402

from seqtune.config import DataConfig  # noqa: E402
from seqtune.data import load_splits  # noqa: E402
from seqtune.inference.generate import generate  # noqa: E402
from seqtune.prompts import encode_prompt, get_format  # noqa: E402
from seqtune.runtime import loaded_allocator  # noqa: E402


def timed(model, tok, prompts, batch, beams, new_tokens, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = generate(model, tok, prompts, num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                   batch_size=batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert len(out) == len(prompts)
    return len(prompts) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokenizer", default="smollm2-135m", help="tokenizer of the random-weight models")
    ap.add_argument("--data", default="data/smiles2iupac_demo")
    ap.add_argument("--n", type=int, default=64, help="prompts for the batched runs")
    ap.add_argument("--n-single", type=int, default=8, help="prompts for the one-at-a-time run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--beams", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--attention", default="sdpa", help="attention kernel (seqtune decodes with the model's own, sdpa)")
    a = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    device = torch.device(a.device)
    model, tok = build_model(a.model, a.tokenizer)
    model.to(device).eval()
    model.set_attn_implementation(a.attention)
    pairs = load_splits(DataConfig(path=a.data, test_size=None)).test
    fmt, instr = get_format("instruct"), DataConfig().instruction
    prompts = [encode_prompt(tok, fmt, p.input, instr) for p in pairs]
    prompts = (prompts * (a.n // len(prompts) + 1))[: a.n]
    timed(model, tok, prompts[:2], 2, 1, 4, device)  # warm-up
    single = timed(model, tok, prompts[: a.n_single], 1, 1, a.new_tokens, device)
    greedy = timed(model, tok, prompts, a.batch, 1, a.new_tokens, device)
    beam = timed(model, tok, prompts[: max(a.n // 4, a.batch // 4)], max(a.batch // a.beams, 1), a.beams,
                 a.new_tokens, device)
    print(f"device {device}, allocator {loaded_allocator()}, model {a.model}, attention "
          f"{model.config._attn_implementation}, {a.new_tokens} new tokens per sequence")
    print(f"one at a time (greedy)        {single:8.2f} sequences/s")
    print(f"batched greedy (batch {a.batch:<4})    {greedy:8.2f} sequences/s  ({greedy / single:.1f}x one at a time)")
    print(f"batched beam {a.beams} (batch {max(a.batch // a.beams, 1):<4})   {beam:8.2f} sequences/s")


if __name__ == "__main__":
    main()
