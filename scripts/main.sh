#!/usr/bin/env bash
# The main job: installs what it needs (see setup.sh), pre-trains a small MDM UNet on the embedded
# synthetic nuclei dataset, then trains few-shot segmentation heads on 3 labelled images and
# evaluates them beside a supervised UNet. Sized to finish in minutes on two CPU cores; pass
# --full-heads for the paper's 10 heads with its epoch schedule.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deno=$(bash scripts/setup.sh)
out=${MDM_OUT:-runs}
heads=(--heads 3 --batch 4 --min-epochs 10 --max-epochs 30 --patience 5)
[ "${1:-}" = "--full-heads" ] && heads=(--batch 4)

"$deno" run -A train.ts --out "$out/pretrain" --fresh
"$deno" run -A segment.ts --checkpoint "$out/pretrain/model.safetensors" --labels 3 "${heads[@]}" --out "$out/segment"

echo
echo "Pre-training: $out/pretrain (pictures/, loss.svg, summary.json, model.safetensors)"
echo "Segmentation: $out/segment/report.md and $out/segment/overlays/"
