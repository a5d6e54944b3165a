#!/usr/bin/env bash
# Create .venv-bench (repo root, git-ignored via `.venv-*/`): one interpreter that can run
# jsma-jax and the three peer JSMAs (AdverTorch 0.2.3, torchattacks 3.5.1, ART 1.20.1),
# plus adv-lib 0.2.8 for the L0 peers of benchmarks/l0_map.py (sigma-zero, FMN-L0, VFGA, PDPGD).
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
# - adv-lib 0.2.8 (benchmarks/l0_map.py) goes in with --no-deps: it declares torchvision
#   (used only by its LPIPS distance, never imported here) and visdom (imported by
#   adv_lib.attacks through its logger, used only when a callback is passed; visdom 0.2.4
#   is an sdist whose build fails with current setuptools: no pkg_resources). l0_map.py
#   imports adv-lib with a stub visdom (see its _import_adv_lib). tqdm comes with ART.
#   matplotlib draws l0_map.py's figure.
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
"${PIP[@]}" --no-deps "adv-lib==0.2.8"
"${PIP[@]}" -c "$CONSTRAINTS" "tqdm>=4.65" "matplotlib>=3.8"
# jsma-jax itself (jax, flax, optax, ...), editable so the checkout is what runs.
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[models,tabular]"

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ["torch", "advertorch", "torchattacks", "adversarial-robustness-toolbox", "adv-lib",
             "jax", "jaxlib", "flax", "numpy", "scipy", "scikit-learn"]:
    try:
        print(f"{name:32s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:32s} (missing)")
EOF
du -sh "$VENV"
