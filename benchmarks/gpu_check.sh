#!/usr/bin/env bash
# Issue 5's GPU measurements in one call: throughput against the peers, throughput at scale in
# float32 and TF32 (with the choices compared), scaling against the batch and M, the CIFAR-sized
# batch and the 224x224x3 attack. About 8-10 minutes on an H100/H200; every result lands in $OUT.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   SMOKE=1 bash benchmarks/gpu_check.sh    # the same steps, tiny, on any machine (checks the script)
#
# Needs: python3 with jax (CUDA), flax, optax, chex, numpy, matplotlib; torch for the peers.
# Optional, in the repository root (gitignored, carried to the machine):
#   .whl/       wheels of advertorch 0.2.3, torchattacks 3.5.1, adversarial-robustness-toolbox 1.20.1:
#               python3 -m pip download --no-deps -d .whl advertorch==0.2.3 torchattacks==3.5.1 \
#                 adversarial-robustness-toolbox==1.20.1
#   .mnist/     t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz): cp ../shared/data/mnist/t10k-* .mnist/
#               (else the embedded 1,000 test digits)
#   runs/models/lenet_tanh_mnist   the checkpoint (else one is trained on the embedded split first)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
run() { log "$*"; "$@" 2>&1 | tee -a "$OUT/log.txt"; }

(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi") | tee "$OUT/machine.txt"
$PY -c "import jax, flax, platform; print('jax', jax.__version__, 'flax', flax.__version__, 'python', platform.python_version(), jax.devices())" | tee -a "$OUT/machine.txt"

DATA=()
ls .mnist/t10k-images-idx3-ubyte* >/dev/null 2>&1 && DATA=(--data-dir .mnist)
CKPT=runs/models/lenet_tanh_mnist
if [ ! -d "$CKPT" ]; then
  CKPT=runs/models/lenet_tanh_embedded
  [ -d "$CKPT" ] || run $PY -m experiments.commands.train --dataset embedded --activation tanh --epochs 10 --out "$CKPT"
fi

if [ -n "${SMOKE:-}" ]; then
  PEER_SOURCES=2; SCALE_SOURCES=4; BATCHES=90; COMPILE_ONLY=1000; SIZES=28x28x1,32x32x3; CIFAR=16
  PEERS=jsma-jax,jsma-jax-tf32,jsma-jax-all-domain,advertorch
else
  PEER_SOURCES=30; SCALE_SOURCES=10000; BATCHES=900,2700,9000,27000,90000; COMPILE_ONLY=; SIZES=28x28x1,32x32x3,64x64x3,224x224x3; CIFAR=1000
  PEERS=jsma-jax,jsma-jax-tf32,jsma-jax-all-domain,jsma-jax-lockstep,advertorch,torchattacks,art
fi
[ ${#DATA[@]} -eq 0 ] && SCALE_SOURCES=$(( SCALE_SOURCES < 1000 ? SCALE_SOURCES : 1000 ))

# 1. Side by side with the peers, the same 270 attacks (torchattacks runs one image at a time).
run $PY benchmarks/bench_attacks.py --checkpoint "$CKPT" "${DATA[@]}" --sources $PEER_SOURCES \
  --contenders $PEERS --out "$OUT/bench_peers.json"
# 2. jsma-jax at scale: every test digit towards its 9 other classes (90,000 attacks), float32 and TF32.
run $PY benchmarks/bench_attacks.py --checkpoint "$CKPT" "${DATA[@]}" --sources $SCALE_SOURCES \
  --contenders jsma-jax,jsma-jax-tf32 --out "$OUT/bench_scale.json"
# 3. Scaling curves, the CIFAR-sized batch and the 224x224x3 attack.
run $PY benchmarks/scaling.py --checkpoint "$CKPT" "${DATA[@]}" --batches $BATCHES --compile-only-batches "$COMPILE_ONLY" \
  --sizes $SIZES --cifar-batch $CIFAR --out "$OUT"
log done
