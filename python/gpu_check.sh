#!/usr/bin/env bash
# The companion on NVIDIA GPUs: fp32 on one GPU, bf16 on one GPU, bf16 on every GPU (torchrun, NCCL), a short
# continuation each, images/s from each run's metrics.jsonl. For a machine with CUDA and PyTorch 2.x; needs no package
# registry and no Node. At most ~8 minutes (each leg is bounded by `timeout`).
#
# Made here (with byol and the CIFAR-10 binaries), then copied beside this script:
#   byol pretrain cifar10:DATA --out runs/gpu --limit 5120 --epochs 100 --batch 256 --checkpoint-every 4 --knn-every 0
#     (stop it after its first checkpoint with Ctrl-C: the run's schedules are those of 100 epochs)
#   byol export runs/gpu --format safetensors --whole --out gpu-whole.safetensors
#   byol views gpu-whole.safetensors --steps 40 --out gpu-views.safetensors   (the views of the next 40 steps)
# Then: bash python/gpu_check.sh gpu-whole.safetensors gpu-views.safetensors [STEPS]
#   (or a dataset spec instead of the views file, e.g. cifar10:DATA: the companion draws byol's views on the CPU)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
whole="${1:?usage: gpu_check.sh WHOLE.safetensors VIEWS.safetensors [STEPS]}"
views="${2:?usage: gpu_check.sh WHOLE.safetensors VIEWS.safetensors [STEPS]}"
steps="${3:-30}"
py="${PYTHON:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# BYOL_GPU_CHECK_DRY=1: the same legs on the CPU (fp32, gloo), to check this script where there is no GPU.
dry="${BYOL_GPU_CHECK_DRY:-}"
if [ -n "$dry" ]; then
  gpus=2
else
  "$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.device_count(), "x", torch.cuda.get_device_name(0))'
  gpus="$("$py" -c 'import torch; print(torch.cuda.device_count())')"
fi
# A views file (byol views) measures the GPU alone; a dataset spec (cifar10:DIR) draws the views here, on the CPU.
case "$views" in *.safetensors) source=(--views "$views") ;; *) source=(--data "$views") ;; esac
dev=(--device cuda); bf16=(--bf16)
if [ -n "$dry" ]; then dev=(--device cpu); bf16=(); fi
leg() {
  local name="$1"; shift
  local dir="$out/$name"
  local t0=$SECONDS
  timeout 150 "$@" "${source[@]}" --out "$dir" --steps "$steps" --log-every 10
  "$py" - "$dir" "$name" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
a, b = lines[len(lines) // 3], lines[-1]
batch = b['imagesPerSecond'] * b['elapsed'] / (b['step'] - lines[0]['step'] + 1)
print(f"{sys.argv[2]}: {(b['step'] - a['step']) * batch / (b['elapsed'] - a['elapsed']):.1f} images/s over steps {a['step']}–{b['step']} "
      f"(loss {lines[0]['loss']:.4f} → {b['loss']:.4f})")
PY
  echo "  ($((SECONDS - t0)) s with start-up)"
}
leg "1 GPU fp32" "$py" "$here/continue_byol.py" "$whole" "${dev[@]}"
leg "1 GPU bf16" "$py" "$here/continue_byol.py" "$whole" "${dev[@]}" "${bf16[@]}"
if [ "$gpus" -gt 1 ]; then
  # --redirects/--tee: without them the launcher fails on Python 3.11 with torch 1.13 (pytorch#92319).
  leg "$gpus GPUs bf16 (NCCL)" "$py" -m torch.distributed.run --standalone --nproc_per_node "$gpus" --redirects 1 --tee 1 --log_dir "$out/logs" "$here/continue_byol.py" "$whole" "${dev[@]}" "${bf16[@]}"
fi
