"""`seqtune export`: one folder with merged weights, tokenizer, prompt format and model card."""

from __future__ import annotations

import shutil
from pathlib import Path

from seqtune.errors import SeqtuneError
from seqtune.io import replace_dir
from seqtune.modeling import FORMAT_FILE


def export_run(run_dir: str | Path, output: str | Path) -> Path:
    """Copy RUN/model (already merged and self-describing) to `output`, atomically."""
    src = Path(run_dir) / "model"
    if not (src / FORMAT_FILE).is_file():
        raise SeqtuneError(f"{run_dir}: no finished model in {src} (run `seqtune run` to the end first)")
    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    output.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, output)
    return output
