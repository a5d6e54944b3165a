#!/usr/bin/env bash
# Create .venv-bench (repo root, git-ignored via `.venv-*/`): one interpreter that can run
# jsma-jax and the three peer JSMAs (AdverTorch 0.2.3, torchattacks 3.5.1, ART 1.20.1).
#
#   bash benchmarks/setup_env.sh            # create or update
#   FRESH=1 bash benchmarks/setup_env.sh    # delete and recreate
#
# Notes
# - torch==2.13.0 exactly: on this machine that resolves to the local CPU wheel in
#   /opt/wheels (pip's find-links). Any other spec may fetch a multi-GB CUDA build.
#   On a GPU machine, install the matching CUDA torch yourself before running this.
# - AdverTorch and torchattacks go in with --no-deps: their declared dependencies
#   (torchvision, requests, ...) are not needed by the JSMA code paths we call, and
#   torchvision from PyPI would drag in a different torch. peers.py installs two
#   compatibility shims for AdverTorch (see the top of benchmarks/peers.py).
# - ART 1.20.1 needs numpy, scipy, scikit-learn, six, setuptools, tqdm; none of them
#   pulls torch. We install it with its deps and a constraint pinning torch, so that a
#   resolver change can never replace the torch above.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-bench"
PY="${PYTHON:-python3.11}"

if [[ "${FRESH:-0}" == "1" && -d "$VENV" ]]; then
  rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --progress-bar off)

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" > "$CONSTRAINTS"

"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" --no-deps "advertorch==0.2.3" "torchattacks==3.5.1"
"${PIP[@]}" pillow  # advertorch imports PIL at import time (its JPEG defence)
"${PIP[@]}" -c "$CONSTRAINTS" "adversarial-robustness-toolbox==1.20.1"
# jsma-jax itself (jax, flax, optax, ...), editable so the checkout is what runs.
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[models]"

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ["torch", "advertorch", "torchattacks", "adversarial-robustness-toolbox",
             "jax", "jaxlib", "flax", "numpy", "scipy", "scikit-learn"]:
    try:
        print(f"{name:32s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:32s} (missing)")
EOF
du -sh "$VENV"
