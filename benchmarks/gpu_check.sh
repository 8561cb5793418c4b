#!/usr/bin/env bash
# One GPU, about 6-8 minutes:
#  1. gpu_step_check.py: a training step on the GPU agrees with the same step on the CPU;
#  2. gpu_graphs.py: a CUDA-graphed step agrees with the eager one, then img/s of dcgan-28/32/64 and the conv VAE
#     with and without CUDA graphs and bf16, at batch 128 and 512, and the share of the GPU's bf16 peak
#     (gpu-graphs.md);
#  3. speed.py: the same models against the tutorial loop, fp32 and bf16, and with a host sync per phase (the
#     non-finite loss check) against the deferred check that is the CUDA default (gpu.md). torch.compile is left
#     out for time (SPEED_COMPILE=dcgan-64,vae-28 adds it back: minutes of compilation).
# Results go to $OUT when set (the device tool brings that folder back), else benchmarks/results/.
#   bash benchmarks/gpu_check.sh            (PY=python to use another interpreter; needs a CUDA device)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RES=${OUT:-benchmarks/results}
mkdir -p "$RES"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
status=0
"$PY" benchmarks/gpu_step_check.py | tee "$RES/gpu_step_check.jsonl" || status=1
"$PY" benchmarks/gpu_graphs.py --results "$RES/gpu-graphs.md" || status=1
"$PY" benchmarks/speed.py --device cuda --models dcgan-28,dcgan-32,dcgan-64,vae-28 --precisions fp32,bf16 \
  --compile "${SPEED_COMPILE:-}" --finite-check dcgan-28,dcgan-64,vae-28 --channels-last dcgan-64,vae-28 --batch 128 \
  --steps 20 --repeats 3 --curve off --results "$RES/gpu.md" || status=1
exit $status
