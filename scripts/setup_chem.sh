#!/usr/bin/env bash
# Extra setup for seqtune's chemistry tasks on a fresh machine:
#   1. a Java runtime for OPSIN (apt, only when `java` is missing),
#   2. the chemistry Python packages (those of the `chem` extra, named here so that
#      pip does not touch torch & co.), unless SEQTUNE_SKIP_PIP=1,
#   3. the MOSES data: the molsets wheel, downloaded without its dependencies
#      (its pins break the environment) into ${SEQTUNE_CACHE:-~/.cache/seqtune}/molsets,
#   4. a smoke test: OPSIN parses a name in-process.
# Usage: scripts/setup_chem.sh [PYTHON]   (default: .venv/bin/python if present, else python3)
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${1:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi

if ! command -v java >/dev/null 2>&1; then
  echo "[setup_chem] installing a headless Java runtime for OPSIN"
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless
fi
java -version 2>&1 | head -1

if [[ "${SEQTUNE_SKIP_PIP:-0}" != 1 ]]; then
  echo "[setup_chem] installing the chemistry packages"
  "$PY" -m pip install -q "rdkit>=2024.3" "pyopsin>=1.1" "py2opsin>=1.2" "jpype1>=1.5" "openclatura>=0.4" "chemicals>=1.1"
fi

CACHE="${SEQTUNE_CACHE:-$HOME/.cache/seqtune}/molsets"
WHEEL="$CACHE/molsets-0.3.1-py3-none-any.whl"
if [[ ! -f "$WHEEL" ]]; then
  echo "[setup_chem] downloading MOSES (molsets 0.3.1 wheel, no dependencies) to $CACHE"
  mkdir -p "$CACHE"
  "$PY" -m pip download -q --no-deps molsets==0.3.1 -d "$CACHE"
fi

echo "[setup_chem] smoke test"
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" "$PY" - <<'EOF'
from seqtune.chem import molecules, opsin
from seqtune.chem.build import sources

smiles = opsin.parse_name("1,3,7-trimethyl-3,7-dihydro-1H-purine-2,6-dione")
assert molecules.canonical_smiles(smiles) == "Cn1c(=O)c2c(ncn2C)n(C)c1=O", smiles
print(f"OPSIN {opsin.opsin_version()} OK ({opsin.find_opsin_jar().name}); MOSES wheel at {sources.moses_wheel(download=False)}")
EOF
