"""PyTorch side of bench/unet.ts: a UNet training step (forward, MSE, backward, AdamW) with the
project's PyTorch port of guided-diffusion's UNet (tests/unet_ref.py), same threads as mdm.

The JSON argument holds the UNet's keyword arguments plus: threads, batch, steps, device ("cpu" or
"cuda"), compile (torch.compile with inductor, PyTorch 2), autocast (null or "bfloat16": the whole
step under torch.autocast, as a PyTorch user runs mixed precision), channels_last.

Prints one JSON object: milliseconds per step, peak memory in MiB (resident set on the CPU, the
allocator's peak on a GPU) and, when compiling, the seconds the first steps took.
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
    device = cfg.pop("device", "cpu")
    compile_model = cfg.pop("compile", False)
    autocast = cfg.pop("autocast", None)
    channels_last = cfg.pop("channels_last", False)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNetModel(**cfg).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    size = cfg["image_size"]
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,), device=device)
    forward = torch.compile(model) if compile_model else model

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        if autocast:
            with torch.autocast(device_type=device, dtype=getattr(torch, autocast)):
                loss = F.mse_loss(forward(x, t).float(), x)
        else:
            loss = F.mse_loss(forward(x, t), x)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(2):
        step()
    sync()
    warmup_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        best = min(best, (time.perf_counter() - t0) / steps)
    if device == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        peak = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps({"step_ms": best * 1e3, "peak_mib": peak, "warmup_s": warmup_s}))


main()
