"""The `seqtune` command. Every subcommand is a thin layer over a library function.

User errors (bad config, bad data, missing model) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from seqtune.errors import SeqtuneError, TrainingInterrupted

USAGE = """seqtune <command> [options]

commands:
  run CONFIG [key=value ...]     data -> train -> predict -> evaluate, base vs tuned table
  train CONFIG [key=value ...]   the same without scoring the base model first
  check CONFIG [key=value ...]   validate config, data, model and lengths; print the plan
  predict --model DIR --input FILE|- [--output FILE] [--beams N] [--verify opsin|round_trip|well_formed|vote --candidates K]
          [--spellings S] [--rerank-model DIR] [--canonical] [--guide] [--retry-beams R [--retry-rounds K]]
  evaluate --predictions FILE [--task TASK] [--output FILE]
  evaluate --model DIR [--holdout moses_scaffold nci_small] [--beams N] [--verify opsin|round_trip|well_formed|vote]
           [--rerank-model DIR] [--canonical] [--guide] [--retry-beams R [--retry-rounds K]]
  export RUN_DIR --output DIR    copy a run's model folder (merged weights, tokenizer, format, card)
  serve MODEL_DIR [--port 8000]  web page + JSON API (POST /predict, /docs), batched across clients
  data chem --task smiles2iupac --source moses --n 10000 --out DIR
  sweep SWEEP.yaml [--retry-failed]
  results DIR                    collect run folders into results.csv / results.md
  report DIR

Config keys can be overridden as key=value, --section.key value, --section.key=value,
Chemprop-style flags (--data-path, --output-dir, --epochs, --lr, --batch-size) or Hugging Face
TrainingArguments names (--output_dir, --learning_rate, --num_train_epochs, ...).
`seqtune run --help` lists every config key; `seqtune run CONFIG --print-config` prints the
resolved config.
"""

# The commands that take a config, and the line their --help starts with.
CONFIG_COMMANDS = {
    "run": "data -> train -> predict -> evaluate, with a base vs tuned table.",
    "train": "The same as run without scoring the base model first.",
    "check": "Validate config, data, model and lengths; print the plan and a time estimate.",
}


def _config(args: list[str]) -> Any:
    from seqtune.config import load_config

    path = None
    # The first argument is the config file unless it reads as an override; a path may
    # contain '=' (sweep run folders do), so an existing file or a .yaml name wins.
    if args and not args[0].startswith("-") and (
        "=" not in args[0] or args[0].endswith((".yaml", ".yml")) or os.path.isfile(args[0])
    ):
        path, args = args[0], args[1:]
    return load_config(path, args)


def _config_or_info(command: str, args: list[str]) -> Any:
    """The run's config, or None once --help or --print-config has printed what was asked."""
    if "-h" in args or "--help" in args:
        from seqtune.config_help import render_help

        print(render_help(command, CONFIG_COMMANDS[command]), end="")
        return None
    if "--print-config" in args:
        import yaml

        from seqtune.config import config_to_dict

        cfg = _config([a for a in args if a != "--print-config"])
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return None
    return _config(args)


def cmd_run(args: list[str], evaluate_base: bool = True) -> int:
    cfg = _config_or_info("run" if evaluate_base else "train", args)
    if cfg is None:
        return 0
    from seqtune.pipeline import run_pipeline

    if not evaluate_base:
        cfg.evaluate_base = False
    run_pipeline(cfg)
    return 0


def cmd_check(args: list[str]) -> int:
    cfg = _config_or_info("check", args)
    if cfg is None:
        return 0
    from seqtune.preflight import preflight

    print(preflight(cfg))
    return 0


def verify_modes() -> tuple[str, ...]:
    import typing

    from seqtune.config import VerifyMode  # here: `seqtune --help` need not load the config module

    return typing.get_args(VerifyMode)


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise SeqtuneError(f"--{name.replace('_', '-')}: must be > 0")


def cmd_predict(argv: list[str]) -> int:
    from seqtune.inference.predict import predict

    p = argparse.ArgumentParser(prog="seqtune predict")
    p.add_argument("--model", required=True, help="folder written by `seqtune run` (RUN/model) or `seqtune export`")
    p.add_argument("--input", "-i", required=True,
                   help="CSV/TSV/JSONL/Parquet, a .txt/.smi file of inputs, or - for stdin")
    p.add_argument("--output", "-o", default=None,
                   help="file to write, CSV/TSV/JSONL/Parquet by its suffix, input columns kept (default: stdout)")
    p.add_argument("--input-column", default=None, help="default: the training data's input column, else input")
    p.add_argument("--output-column", default="output", help="references, scored when present")
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--candidates", type=int, default=1)
    p.add_argument("--verify", choices=verify_modes(), default="none")
    p.add_argument("--spellings", type=int, default=1, help="SMILES inputs: decode this many spellings (with --verify)")
    p.add_argument("--rerank-model", default="", help="model folder of the reverse task: rerank the beams by both "
                   "models (noisy channel)")
    p.add_argument("--canonical", action="store_true", help="SMILES outputs: rewrite every beam in canonical form "
                   "(for a model trained with data.output_order: name)")
    p.add_argument("--guide", action="store_true", help="smiles2inchi: drop beams whose InChI so far cannot be "
                   "the input molecule's while searching")
    p.add_argument("--retry-beams", type=int, default=0, help="with --verify: decode the inputs none of whose beams "
                   "verify again with this many beams")
    p.add_argument("--retry-rounds", type=int, default=1, help="with --retry-beams: this many retries, each twice "
                   "as wide as the last")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's generation_config.json")
    a = p.parse_args(argv)
    _check_positive(a, "beams", "candidates", "spellings", "batch_size", "max_new_tokens", "retry_rounds")
    result = predict(a.model, a.input, a.output, num_beams=a.beams, candidates=a.candidates, verify=a.verify,
                     batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, input_column=a.input_column,
                     output_column=a.output_column, spellings=a.spellings, rerank_model=a.rerank_model,
                     canonical=a.canonical, guide=a.guide, retry_beams=a.retry_beams,
                     retry_rounds=a.retry_rounds)
    print(json.dumps(result, indent=2), file=sys.stderr if not a.output else sys.stdout)
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    from seqtune.inference.predict import HOLDOUTS, evaluate_file, evaluate_model

    p = argparse.ArgumentParser(prog="seqtune evaluate")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--predictions", help="JSONL with reference and prediction fields")
    what.add_argument("--model", help="model folder to decode and score on --holdout sets")
    p.add_argument("--holdout", nargs="+", default=list(HOLDOUTS),
                   help=f"with --model: {', '.join(HOLDOUTS)} (default: all) or pair files")
    p.add_argument("--task", default="", help="e.g. smiles2iupac, to add chemistry scores")
    p.add_argument("--output", default=None, help="metrics JSON to write (with --model: a folder)")
    p.add_argument("--checkpoint", default=None, help="with --model: score RUN/checkpoints/step-N's weights instead")
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--candidates", type=int, default=1)
    p.add_argument("--verify", choices=verify_modes(), default="none")
    p.add_argument("--spellings", type=int, default=1, help="SMILES inputs: decode this many spellings (with --verify)")
    p.add_argument("--rerank-model", default="", help="model folder of the reverse task: rerank the beams by both "
                   "models (noisy channel)")
    p.add_argument("--canonical", action="store_true", help="SMILES outputs: rewrite every beam in canonical form "
                   "(for a model trained with data.output_order: name)")
    p.add_argument("--guide", action="store_true", help="smiles2inchi: drop beams whose InChI so far cannot be "
                   "the input molecule's while searching")
    p.add_argument("--retry-beams", type=int, default=0, help="with --verify: decode the inputs none of whose beams "
                   "verify again with this many beams")
    p.add_argument("--retry-rounds", type=int, default=1, help="with --retry-beams: this many retries, each twice "
                   "as wide as the last")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    a = p.parse_args(argv)
    _check_positive(a, "beams", "candidates", "spellings", "batch_size", "max_new_tokens", "retry_rounds")
    if a.model:
        result = evaluate_model(a.model, a.holdout, a.output, a.checkpoint, num_beams=a.beams, candidates=a.candidates,
                                verify=a.verify, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                                spellings=a.spellings, rerank_model=a.rerank_model, canonical=a.canonical,
                                guide=a.guide, retry_beams=a.retry_beams, retry_rounds=a.retry_rounds)
    else:
        result = evaluate_file(a.predictions, a.task, a.output)
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(argv: list[str]) -> int:
    from seqtune.export import main as export_main

    return export_main(argv)


def cmd_serve(argv: list[str]) -> int:
    from seqtune.inference.serve import main as serve_main

    return serve_main(argv)


def cmd_data(argv: list[str]) -> int:
    if not argv or argv[0] != "chem":
        raise SeqtuneError("usage: seqtune data chem --task TASK --source SOURCE --n N --out DIR")
    from seqtune.chem.build.dataset import main as build_main

    return build_main(argv[1:])


def cmd_sweep(argv: list[str]) -> int:
    from seqtune.experiments.sweep import main as sweep_main

    return sweep_main(argv)


def cmd_report(argv: list[str]) -> int:
    from seqtune.experiments.report import main as report_main

    return report_main(argv)


def cmd_results(argv: list[str]) -> int:
    from seqtune.experiments.results import main as results_main

    return results_main(argv)


COMMANDS = {
    "run": cmd_run,
    "train": lambda a: cmd_run(a, evaluate_base=False),
    "check": cmd_check,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "serve": cmd_serve,
    "data": cmd_data,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "results": cmd_results,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "version"):
        from seqtune import __version__
        from seqtune.runtime import loaded_allocator

        print(f"seqtune {__version__} (memory allocator: {loaded_allocator()})")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"seqtune: error: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    # Quieter logs from the libraries; our own messages carry what a user needs.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return command(argv[1:])
    except TrainingInterrupted as err:
        print(f"seqtune: error: {err}", file=sys.stderr)
        return 130
    except SeqtuneError as err:
        print(f"seqtune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqtune: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `seqtune` command and `python -m seqtune`: `main` in a process set up for speed
    (see seqtune.runtime); `main` itself, as tests and other code call it, changes nothing."""
    from seqtune.runtime import use_fast_allocator

    as_module = sys.argv[0].endswith("__main__.py")
    use_fast_allocator(["-m", "seqtune", *sys.argv[1:]] if as_module else sys.argv)
    raise SystemExit(main())
