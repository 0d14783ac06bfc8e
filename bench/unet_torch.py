"""PyTorch side of bench/unet.ts: a UNet training step (forward, MSE, backward, AdamW) with the
project's PyTorch port of guided-diffusion's UNet (tests/unet_ref.py), same threads as mdm.

Prints one JSON object: milliseconds per step and peak resident memory in MiB.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from unet_ref import UNetModel  # noqa: E402


def main():
    cfg = json.loads(sys.argv[1])
    threads, batch, steps = cfg.pop("threads"), cfg.pop("batch"), cfg.pop("steps")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNetModel(**cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    size = cfg["image_size"]
    x = torch.randn(batch, 3, size, size)
    t = torch.randint(0, 1000, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x, t), x).backward()
        opt.step()

    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step_ms": best * 1e3, "peak_mib": peak}))


main()
