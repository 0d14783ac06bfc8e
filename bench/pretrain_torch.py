"""PyTorch side of bench/pretrain.ts: MDM pre-training steps (random crops and flips from decoded
in-memory images, timestep-controlled patch masking, UNet forward, SSIM loss, backward, AdamW,
EMA) with the project's PyTorch port of guided-diffusion's UNet (tests/unet_ref.py), same threads
as mdm.

Two pipelines (cfg["style"]):
- "batched": crops gathered into one uint8 array and converted at once; masking vectorised over the
  batch as mdm's maskPatches does (argsort of [B, L] noise, rank >= keep, masked_fill); SSIM as mdm
  computes it (one grouped conv over x, y, x², y², xy).
- "loop": the authors' style. Each crop is converted to float in numpy on its own (guided-diffusion's
  ImageDataset) and the batch collated with torch.stack; timesteps from numpy (guided-diffusion's
  UniformSampler); each image masked in a Python loop MAE-style (patchify, argsort of noise, keep
  the first floor(L(1-r)) patches, zeros for the rest, gather back, unpatchify); SSIM as
  pytorch-ssim writes it (five depth-wise convs, window cached per channel count).
Both: AdamW (lr 1e-4, weight decay 0), loss.item() each step, EMA 0.9999 as guided-diffusion's
update_ema (a mul_/add_ loop over the parameters).

Prints one JSON object: milliseconds per step (best of the repeats) and the last loss.
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from unet_ref import UNetModel  # noqa: E402

T_STEPS = 1000
PATCH = 8


def gaussian_window(size=5, sigma=1.5):
    c = size // 2
    g = torch.tensor([math.exp(-((i - c) ** 2) / (2 * sigma * sigma)) for i in range(size)])
    g = g / g.sum()
    return g[:, None] @ g[None, :]  # [size, size]


class Loader:
    """Random crops with a left-right flip of probability 1/2, every image once per epoch in a
    reshuffled order, from decoded uint8 images [H, W, 3] in memory."""

    def __init__(self, images, crop, seed=0):
        self.images, self.crop = images, crop
        self.rng = np.random.default_rng(seed)
        self.order, self.cursor = [], 0

    def _next_crop(self):
        if self.cursor >= len(self.order):
            self.order, self.cursor = self.rng.permutation(len(self.images)), 0
        img = self.images[self.order[self.cursor]]
        self.cursor += 1
        s = self.crop
        h, w = img.shape[:2]
        x0, y0 = self.rng.integers(w - s + 1), self.rng.integers(h - s + 1)
        out = img[y0:y0 + s, x0:x0 + s]
        return out[:, ::-1] if self.rng.random() < 0.5 else out

    def batched(self, b):
        arr = np.stack([self._next_crop() for _ in range(b)])  # [B, S, S, 3] uint8
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        return x.float().div_(127.5).sub_(1)

    def per_sample(self, b):
        samples = []
        for _ in range(b):
            arr = self._next_crop().astype(np.float32) / 127.5 - 1
            samples.append(torch.from_numpy(np.transpose(arr, [2, 0, 1]).copy()))
        return torch.stack(samples)


def mask_batched(x, t):
    b, c, h, w = x.shape
    gh, gw = h // PATCH, w // PATCH
    L = gh * gw
    keep = (1 - t.double() / T_STEPS).mul(L).floor()
    rank = torch.rand(b, L, device=x.device).argsort(1).argsort(1)
    mask = rank >= keep[:, None]
    pixels = mask.reshape(b, 1, gh, 1, gw, 1).expand(b, 1, gh, PATCH, gw, PATCH).reshape(b, 1, h, w)
    return x.masked_fill(pixels.expand(b, c, h, w), 0)


def mask_loop(x, t):
    """MAE's random_masking, one image at a time."""
    b, c, h, w = x.shape
    gh, gw = h // PATCH, w // PATCH
    L, D = gh * gw, PATCH * PATCH * c
    out = []
    for i in range(b):
        patches = x[i].reshape(c, gh, PATCH, gw, PATCH).permute(1, 3, 2, 4, 0).reshape(L, D)
        len_keep = int(L * (1 - t[i].item() / T_STEPS))
        noise = torch.rand(L, device=x.device)
        ids_shuffle = torch.argsort(noise)
        ids_restore = torch.argsort(ids_shuffle)
        kept = patches[ids_shuffle[:len_keep]]
        full = torch.cat([kept, torch.zeros(L - len_keep, D, device=x.device)], 0)
        full = torch.gather(full, 0, ids_restore[:, None].expand(L, D))
        out.append(full.reshape(gh, gw, PATCH, PATCH, c).permute(4, 0, 2, 1, 3).reshape(c, h, w))
    return torch.stack(out)


class SsimFused:
    """mdm's formulation: one grouped conv filters x, y, x², y², xy (window cached, contiguous)."""

    def __init__(self):
        self.channels, self.window = None, None

    def __call__(self, x, y):
        c = x.shape[1]
        if c != self.channels:
            self.channels, self.window = c, gaussian_window()[None, None].expand(5 * c, 1, 5, 5).contiguous().to(x.device)
        w = self.window
        stats = F.conv2d(torch.cat([x, y, x * x, y * y, x * y], 1), w, padding=2, groups=5 * c)
        mu_x, mu_y, xx, yy, xy = stats.chunk(5, 1)
        mu_xy, mu_x2, mu_y2 = mu_x * mu_y, mu_x.square(), mu_y.square()
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        num = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
        den = (mu_x2 + mu_y2 + c1) * ((xx - mu_x2) + (yy - mu_y2) + c2)
        return ((1 - num / den).clamp(0, 1) / 2).mean()


class SsimPerStat:
    """pytorch-ssim's formulation: five depth-wise convs, the window cached per channel count."""

    def __init__(self):
        self.channels, self.window = None, None

    def __call__(self, x, y):
        c = x.shape[1]
        if c != self.channels:
            self.channels, self.window = c, gaussian_window()[None, None].expand(c, 1, 5, 5).contiguous().to(x.device)
        w = self.window
        mu1 = F.conv2d(x, w, padding=2, groups=c)
        mu2 = F.conv2d(y, w, padding=2, groups=c)
        mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
        sigma1_sq = F.conv2d(x * x, w, padding=2, groups=c) - mu1_sq
        sigma2_sq = F.conv2d(y * y, w, padding=2, groups=c) - mu2_sq
        sigma12 = F.conv2d(x * y, w, padding=2, groups=c) - mu1_mu2
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
        return (torch.clamp(1 - ssim_map, 0, 1) / 2).mean()


def main():
    cfg = json.loads(sys.argv[1])
    threads, batch, style = cfg.pop("threads"), cfg.pop("batch"), cfg.pop("style")
    steps, repeats, warmup = cfg.pop("steps"), cfg.pop("repeats"), cfg.pop("warmup")
    paths, ema_rate = cfg.pop("paths"), cfg.pop("ema_rate")
    device = cfg.pop("device", "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    images = [np.load(p) for p in paths]  # [H, W, 3] uint8, decoded by bench/pretrain.ts
    loader = Loader(images, cfg["image_size"])
    model = UNetModel(**cfg).to(device)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    batched = style == "batched"
    ssim_loss = SsimFused() if batched else SsimPerStat()

    def step():
        if batched:
            x0 = loader.batched(batch).to(device)
            t = torch.randint(0, T_STEPS, (batch,), device=device)
            xt = mask_batched(x0, t)
        else:
            x0 = loader.per_sample(batch).to(device)
            t = torch.from_numpy(np.random.randint(0, T_STEPS, size=(batch,))).long().to(device)
            xt = mask_loop(x0, t)
        opt.zero_grad(set_to_none=True)
        loss = ssim_loss(model(xt, t), x0)
        loss.backward()
        value = loss.item()
        opt.step()
        with torch.no_grad():
            for p_ema, p in zip(ema, model.parameters()):
                p_ema.mul_(ema_rate).add_(p, alpha=1 - ema_rate)
        return value

    for _ in range(warmup):
        step()
    best, loss = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        best = min(best, (time.perf_counter() - t0) / steps)
    print(json.dumps({"step_ms": best * 1e3, "loss": loss}))


main()
