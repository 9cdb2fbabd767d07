"""Tiny models and tokenizers built in the test itself (no download), one per tokenizer family."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "CCO ethanol", "CC(=O)O acetic acid", "c1ccccc1 benzene", "CC(C)O propan-2-ol", "CCN ethanamine",
    "Translate the SMILES string of a molecule into its IUPAC name.", "### Instruction: Input: Response:",
    "methyl ethyl propyl butyl pentyl hexyl oxy amino hydroxy chloro bromo fluoro carboxylic acid",
    "0123456789 ()[]=#@+-/\\ CNOSPFIBrClcnos", "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def make_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    """kind: gpt2 (byte-level BPE, pad == eos), opt (BPE, BOS </s> == EOS), llama (Metaspace BPE, <s> BOS)."""
    if kind in ("gpt2", "opt"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        special = ["<|endoftext|>"] if kind == "gpt2" else ["<s>", "<pad>", "</s>", "<unk>"]
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(CORPUS * 5, trainer)
        if kind == "gpt2":
            fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
            fast.pad_token = fast.eos_token
        else:
            eos_id = tok.token_to_id("</s>")
            tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A </s> $B",
                                                               special_tokens=[("</s>", eos_id)])
            fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", bos_token="</s>",
                                           pad_token="<pad>", unk_token="<unk>")
        return fast
    if kind == "llama":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
        tok.train_from_iterator(CORPUS * 5, trainer)
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    raise ValueError(kind)


def make_model(kind: str, vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2):
    torch.manual_seed(seed)
    if kind == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_positions=512, n_embd=hidden, n_layer=layers, n_head=4)
    elif kind == "opt":
        cfg = OPTConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, ffn_dim=hidden * 4,
                        num_attention_heads=4, max_position_embeddings=512, word_embed_proj_dim=hidden,
                        pad_token_id=1, bos_token_id=2, eos_token_id=2)
    elif kind == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=512, tie_word_embeddings=True)
    else:
        raise ValueError(kind)
    return AutoModelForCausalLM.from_config(cfg)


def save_tiny(kind: str, folder: str | Path, seed: int = 0, **model_kwargs) -> Path:
    """A local model folder (config, weights, tokenizer) usable as `model.name`."""
    folder = Path(folder)
    tok = make_tokenizer(kind)
    model = make_model(kind, len(tok), seed=seed, **model_kwargs)
    model.config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_run(folder: Path, rows: list[dict], model_dir: Path, model: dict, max_new_tokens: int = 6) -> dict:
    """A run's raw config: `rows` written as folder/train.jsonl, one fp32 epoch of the tiny model at
    model_dir with the `model` settings given, 20 % each held out for validation and test."""
    import json

    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"out_dir": str(folder / "run"), "evaluate_base": False,
            "data": {"path": str(folder / "train.jsonl"), "val_fraction": 0.2, "test_fraction": 0.2},
            "model": {"name": str(model_dir), "format": "plain", **model},
            "train": {"epochs": 1, "batch_size": 4, "progress": False, "logger": "none", "precision": "fp32"},
            "generate": {"max_new_tokens": max_new_tokens}}
