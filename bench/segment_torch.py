"""PyTorch side of bench/segment.ts: the medical few-shot protocol (paper, Sec. 4.2) written plainly,
the way the reference code runs it, with the project's port of guided-diffusion's UNet
(tests/unet_ref.py) on the same weights (a safetensors file parsed by hand), same threads as mdm.

- Head training, per head: each step a batch of random crops, masked per the paper's Sec. 4.1 (MAE-style:
  argsort of uniform noise, keep the first floor(L·(1 - t/T)) patches, zeros for the rest, restore
  the order), a full UNet forward with forward hooks on the wanted decoder blocks, bilinear upsampling
  (align_corners=False) to the crop, concatenation, division by each crop's global L2 norm; pixel MLP
  Linear-ReLU-BN-Linear-ReLU-BN-Linear (weights N(0, 0.02), biases 0), Adam, cross-entropy with
  ignore_index 255. Then the batch-norm statistics are recomputed over a few batches of crops with the
  final weights (momentum None), as mdm's trainHead does, so that both sides do the same work.
- Test: Gaussian-weighted sliding windows (sigma 0.125·window), one window at a time.
  cfg["style"] == "reference": every head recomputes every window's features for itself (per-head
  predictions, as the reference code makes them); "shared": each window's features computed once and
  given to every head. The mask generator is reseeded per image (and, in "reference", per head), so
  both styles see the same masks and must give identical predictions: the JSON's pred_md5 shows it.

Prints one JSON object: seconds per phase, peak resident memory (MiB), mean Dice, a digest of the
predictions.
"""
import hashlib
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from unet_ref import UNetModel, capture_blocks  # noqa: E402

DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32}


def load_safetensors(path):
    """safetensors by hand: 8-byte little-endian header length, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(blob[base + begin:base + end]), dtype=dtype) if end > begin \
            else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def mask_patches(x, t, generator, patch=8, steps=1000):
    """Paper Sec. 4.1 as MAE's random_masking: per sample L uniform numbers, argsort, keep the first
    floor(L·(1 - t/T)) patches, zeros for the others, restore the original order, unpatchify."""
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    L = gh * gw
    patches = x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 3, 5, 1).reshape(b, L, patch * patch * c)
    keep = int(math.floor(L * (1 - t / steps)))
    noise = torch.rand(b, L, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    kept = torch.gather(patches, 1, ids_shuffle[:, :keep, None].expand(-1, -1, patches.size(2)))
    full = torch.cat([kept, torch.zeros(b, L - keep, patches.size(2))], dim=1)
    restored = torch.gather(full, 1, ids_restore[:, :, None].expand(-1, -1, patches.size(2)))
    return restored.reshape(b, gh, gw, patch, patch, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


@torch.no_grad()
def features(model, images, cfg, generator):
    """Masked input at t, full UNet forward with hooks, bilinear upsampling, concatenation, global L2 norm."""
    b, _, h, w = images.shape
    t = cfg["t"]
    x = mask_patches(images, t, generator)
    _, feats = capture_blocks(model, x, torch.full((b,), t, dtype=torch.int64), cfg["blocks"])
    up = [f if f.shape[-2:] == (h, w) else F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)
          for f in feats]
    f = torch.cat(up, dim=1)
    norm = f.flatten(1).norm(dim=1).clamp_min(1e-12)
    return f / norm[:, None, None, None]


def pixels(f):
    return f.permute(0, 2, 3, 1).reshape(-1, f.size(1))


def classifier(d, k):
    h1, h2 = (256, 128) if k >= 30 else (128, 32)
    net = nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.BatchNorm1d(h1), nn.Linear(h1, h2), nn.ReLU(),
                        nn.BatchNorm1d(h2), nn.Linear(h2, k))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


def sample_crops(data, rng, batch, crop):
    imgs, labs = [], []
    for _ in range(batch):
        img, lab = data[rng.integers(len(data))]
        h, w = lab.shape
        x0, y0 = rng.integers(w - crop + 1), rng.integers(h - crop + 1)
        imgs.append(img[y0:y0 + crop, x0:x0 + crop])
        labs.append(lab[y0:y0 + crop, x0:x0 + crop])
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = torch.from_numpy(np.stack(labs).astype(np.int64)).reshape(-1)
    return x, y


def train_head(model, data, cfg, head, d):
    seed = cfg["seed"] * 1009 + head
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = classifier(d, cfg["classes"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    steps_per_epoch = max(1, math.ceil(len(data) / cfg["batch"]))
    net.train()
    for _ in range(cfg["epochs"]):  # a fixed number of epochs, no early stopping
        for _ in range(steps_per_epoch):
            x, y = sample_crops(data, rng, cfg["batch"], cfg["crop"])
            f = features(model, x, cfg, gen)
            opt.zero_grad()
            loss = F.cross_entropy(net(pixels(f)), y, ignore_index=255)
            loss.backward()
            opt.step()
            loss.item()
    # Batch-norm statistics recomputed with the final weights (cumulative average), as mdm does.
    bns = [m for m in net if isinstance(m, nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for _ in range(max(steps_per_epoch, 4)):
            x, _ = sample_crops(data, rng, cfg["batch"], cfg["crop"])
            net(pixels(features(model, x, cfg, gen)))
    for m in bns:
        m.momentum = 0.1
    net.eval()
    return net


def window_starts(size, window, stride):
    if size <= window:
        return [0]
    s = list(range(0, size - window, stride))
    return s + [size - window]


def gaussian(window, sigma_scale=0.125):
    sigma, c = sigma_scale * window, (window - 1) / 2
    r = torch.arange(window, dtype=torch.float64)
    g = torch.exp(-((r[:, None] - c) ** 2 + (r[None, :] - c) ** 2) / (2 * sigma * sigma))
    return g.float()[None, None]


@torch.no_grad()
def predict(model, heads, img, cfg):
    """Per-head class maps of one image [H, W, 3] uint8, windows one at a time."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(127.5).sub(1)
    _, _, h, w = x.shape
    win = cfg["window"]
    assert h >= win and w >= win
    stride = max(1, int(win * (1 - cfg["overlap"])))
    g = gaussian(win)
    origins = [(y, x0) for y in window_starts(h, win, stride) for x0 in window_starts(w, win, stride)]
    k = cfg["classes"]

    def logits_of(head, f):
        return head(pixels(f)).reshape(1, win, win, k).permute(0, 3, 1, 2)

    sums = [torch.zeros(1, k, h, w) for _ in heads]
    norm = torch.zeros(1, 1, h, w)
    for y, x0 in origins:
        norm[:, :, y:y + win, x0:x0 + win] += g
    if cfg["style"] == "reference":
        for i, head in enumerate(heads):
            gen = torch.Generator().manual_seed(cfg["seed"])
            for y, x0 in origins:
                f = features(model, x[:, :, y:y + win, x0:x0 + win], cfg, gen)
                sums[i][:, :, y:y + win, x0:x0 + win] += logits_of(head, f) * g
    else:
        gen = torch.Generator().manual_seed(cfg["seed"])
        for y, x0 in origins:
            f = features(model, x[:, :, y:y + win, x0:x0 + win], cfg, gen)
            for i, head in enumerate(heads):
                sums[i][:, :, y:y + win, x0:x0 + win] += logits_of(head, f) * g
    return [(s / norm).argmax(1)[0].numpy().astype(np.uint8) for s in sums]


def dice(pred, target):
    p, t = pred > 0, target > 0
    tp = np.logical_and(p, t).sum()
    d = p.sum() + t.sum()
    return 1.0 if d == 0 else 2 * tp / d


def load_pair(image, mask):
    img = np.load(image)  # [H, W, 3] and [H, W] uint8, decoded by bench/segment.ts
    lab = np.load(mask)
    assert lab.shape == img.shape[:2] and lab.max() <= 1
    return img, lab


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    u = cfg["unet"]
    model = UNetModel(image_size=u["imageSize"], model_channels=u["modelChannels"], channel_mult=u["channelMult"],
                      num_res_blocks=u["numResBlocks"], attention_resolutions=u["attentionResolutions"],
                      num_head_channels=u["numHeadChannels"], resblock_updown=u["resblockUpdown"])
    state = load_safetensors(cfg["weights"])
    model.load_state_dict(state, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    train = [load_pair(i, m) for i, m in zip(cfg["train_images"], cfg["train_masks"])]
    test = [load_pair(i, m) for i, m in zip(cfg["test_images"], cfg["test_masks"])]
    d = sum(model.output_blocks[b][0].out_layers[3].out_channels for b in cfg["blocks"])

    t0 = time.perf_counter()
    heads = [train_head(model, train, cfg, h, d) for h in range(cfg["heads"])]
    t1 = time.perf_counter()
    digest, dices = hashlib.md5(), []
    for img, lab in test:
        preds = predict(model, heads, img, cfg)
        for p in preds:
            digest.update(p.tobytes())
            dices.append(dice(p, lab))
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"train_s": t1 - t0, "test_s": t2 - t1, "total_s": t2 - t0, "peak_mib": peak,
                      "dice": float(np.mean(dices)), "pred_md5": digest.hexdigest(), "channels": d}))


main()
