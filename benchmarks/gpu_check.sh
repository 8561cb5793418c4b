#!/usr/bin/env bash
# One GPU, under 5 minutes: a training step agrees with the CPU, then training img/s of dcgan-28, dcgan-64 and the
# conv VAE against the tutorial loop, with and without torch.compile and bf16, and with a host sync per phase
# (the non-finite loss check) against the deferred check that is the CUDA default. Writes benchmarks/results/gpu.md.
#   bash benchmarks/gpu_check.sh            (PY=python to use another interpreter; needs a CUDA device)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
"$PY" benchmarks/gpu_step_check.py
"$PY" benchmarks/speed.py --device cuda --models dcgan-28,dcgan-64,vae-28 --precisions fp32,bf16 \
  --compile dcgan-64,vae-28 --finite-check dcgan-28,dcgan-64,vae-28 --channels-last dcgan-64,vae-28 --batch 128 --steps 20 --repeats 5 \
  --results benchmarks/results/gpu.md
