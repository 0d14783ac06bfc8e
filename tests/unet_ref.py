"""An independent PyTorch port of guided-diffusion's UNet (the layout the paper's Section 4.1 adopts), the oracle for
tests/unet_test.ts.

Written from the architecture description, not from guided-diffusion's source. Module names follow
guided-diffusion's, so state-dict keys (input_blocks.1.0.in_layers.2.weight, middle_block.1.qkv.weight,
out.2.weight, ...) are the checkpoint keys, and the constructor takes guided-diffusion's argument names.

As a module: UNetModel, capture_blocks (decoder-block outputs through forward hooks), randomize,
count_parameters. As a command (Debian's /usr/bin/python3 with torch 1.13):

    python3 tests/unet_ref.py --preset medical_256          # parameter count
    python3 tests/unet_ref.py --config '{"image_size": 32, "model_channels": 32, "channel_mult": [1, 2]}' --keys
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch import nn

# The paper's models (its Appendix A.2 and the authors' release), with guided-diffusion's argument names.
PRESETS = {
    "medical_256": dict(image_size=256, model_channels=192, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                        attention_resolutions=(32, 16, 8), num_head_channels=64, resblock_updown=True,
                        use_scale_shift_norm=True, dropout=0.0, out_channels=3),
    # ddpm-segmentation's FFHQ DDPM: 256 channels, learn_sigma (6 output channels), dropout 0.1.
    "ffhq_256": dict(image_size=256, model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                     attention_resolutions=(32, 16, 8), num_head_channels=64, resblock_updown=True,
                     use_scale_shift_norm=True, dropout=0.1, out_channels=6),
}


class GroupNorm32(nn.GroupNorm):
    """32-group norm whose statistics are always computed in float32 (a half torso would lose them)."""

    def __init__(self, channels, device=None):
        super().__init__(32, channels, eps=1e-5, device=device)

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


def zeroed(module):
    # Layers that start at zero make every residual branch, and the whole output, start as zero.
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(t, dim, max_period=10000):
    """[B] timesteps -> [B, dim] float32: cos(t·f_i) then sin(t·f_i), f_i = max_period^(-i/half)."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * i / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:  # an odd width gets a zero column
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 conv (key `conv`) when use_conv."""

    def __init__(self, channels, use_conv, device=None):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1, device=device)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """×1/2: a stride-2 3×3 conv (key `op`) when use_conv, else 2×2 average pooling."""

    def __init__(self, channels, use_conv, device=None):
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1, device=device)
        else:
            self.op = nn.AvgPool2d(2, stride=2)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, dropout, out_channels=None, use_scale_shift_norm=False,
                 use_conv_skip=False, up=False, down=False, device=None):
        super().__init__()
        out = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        # Sequential indices are part of the keys: in_layers.2 is the conv, out_layers.3 the last conv.
        self.in_layers = nn.Sequential(GroupNorm32(channels, device), nn.SiLU(),
                                       nn.Conv2d(channels, out, 3, padding=1, device=device))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        # With scale-shift the embedding gives a scale and a shift per channel, else one bias.
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out if use_scale_shift_norm else out, device=device))
        self.out_layers = nn.Sequential(GroupNorm32(out, device), nn.SiLU(), nn.Dropout(dropout),
                                        zeroed(nn.Conv2d(out, out, 3, padding=1, device=device)))
        if out == channels:
            self.skip_connection = nn.Identity()
        elif use_conv_skip:
            self.skip_connection = nn.Conv2d(channels, out, 3, padding=1, device=device)
        else:
            self.skip_connection = nn.Conv2d(channels, out, 1, device=device)

    def forward(self, x, emb):
        if self.updown:
            # Resample after GN+SiLU and before the conv, and resample the skip path's input too.
            norm_act, conv = self.in_layers[:-1], self.in_layers[-1]
            h = conv(self.h_upd(norm_act(x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


def attention_legacy(qkv, heads):
    """QKVAttentionLegacy: split into heads first, then each head's rows into q, k, v."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    return _attend(q, k, v, ch).reshape(b, heads * ch, length)


def attention_new_order(qkv, heads):
    """QKVAttention: split into q, k, v first (thirds of the channels), then each into heads."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    q, k, v = (z.reshape(b * heads, ch, length) for z in qkv.chunk(3, dim=1))
    return _attend(q, k, v, ch).reshape(b, heads * ch, length)


def _attend(q, k, v, ch):
    # q and k are each scaled by ch^-1/4 (not the product by ch^-1/2), which keeps float16 in range.
    s = ch ** -0.25
    logits = torch.einsum("nct,ncs->nts", q * s, k * s)
    weights = torch.softmax(logits.float(), dim=-1).to(logits.dtype)
    return torch.einsum("nts,ncs->nct", weights, v)


class AttentionBlock(nn.Module):
    def __init__(self, channels, num_heads=1, num_head_channels=-1, use_new_attention_order=False, device=None):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"{channels} channels do not split into heads of {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.attend = attention_new_order if use_new_attention_order else attention_legacy
        self.norm = GroupNorm32(channels, device)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1, device=device)
        self.proj_out = zeroed(nn.Conv1d(channels, channels, 1, device=device))

    def forward(self, x):
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        h = self.proj_out(self.attend(self.qkv(self.norm(flat)), self.num_heads))
        return (flat + h).reshape(x.shape)


class EmbedSequential(nn.Sequential):
    """Applies its layers in turn; ResBlocks also receive the timestep embedding."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNetModel(nn.Module):
    def __init__(self, image_size, in_channels=3, model_channels=128, out_channels=3, num_res_blocks=2,
                 attention_resolutions=(16, 8), dropout=0.0, channel_mult=(1, 2, 4, 8), conv_resample=True,
                 num_heads=4, num_head_channels=-1, num_heads_upsample=-1, use_scale_shift_norm=True,
                 resblock_updown=False, use_new_attention_order=False, device=None):
        super().__init__()
        # attention_resolutions are feature resolutions; the loop below tracks the downsampling factor.
        attention_ds = {image_size // r for r in attention_resolutions}
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample
        emb_dim = 4 * model_channels
        self.model_channels = model_channels
        self.torso_dtype = torch.float32

        def res(ch, out, **kw):
            return ResBlock(ch, emb_dim, dropout, out, use_scale_shift_norm, device=device, **kw)

        def attn(ch, heads):
            return AttentionBlock(ch, heads, num_head_channels, use_new_attention_order, device)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim, device=device), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim, device=device))

        ch = first_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1, device=device))])
        skip_chs, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chs.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, device)
                self.input_blocks.append(EmbedSequential(down))
                skip_chs.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                # Each decoder block takes the previous output concatenated with one encoder output.
                layers = [res(ch + skip_chs.pop(), int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch, heads_up))
                if level > 0 and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, device))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch, device), nn.SiLU(),
                                 zeroed(nn.Conv2d(first_ch, out_channels, 3, padding=1, device=device)))

    def convert_torso(self, dtype):
        """Runs input, middle and output blocks in `dtype` (guided-diffusion's use_fp16 converts the
        convs there; norms stay float32 and compute in float32, the embedding linears stay float32)."""
        self.torso_dtype = dtype
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.to(dtype)
        return self

    def forward(self, x, timesteps):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        h, skips = x.to(self.torso_dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))


def capture_blocks(model, x, timesteps, blocks):
    """Runs the model, returning (output, [output_blocks[i]'s output for i in blocks])."""
    seen = {}
    hooks = [model.output_blocks[i].register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, out))
             for i in set(blocks)]
    try:
        out = model(x, timesteps)
    finally:
        for hk in hooks:
            hk.remove()
    return out, [seen[i] for i in blocks]


def forward_backward(model, x, timesteps, target, capture=()):
    """The tests' training step: loss = mean((out - target)²), one backward pass (x should require
    grad). Returns the output, the captured features, the loss, every parameter's gradient and x's."""
    model.zero_grad(set_to_none=True)
    out, features = capture_blocks(model, x, timesteps, capture)
    loss = ((out - target) ** 2).mean()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {"out": out, "features": features, "loss": loss, "grads": grads, "x_grad": x.grad}


@torch.no_grad()
def randomize(model, generator, scale=0.1):
    """Seeded non-trivial weights (zero-initialised layers included), the same rule as the TS test:
    1-D `weight`s are GroupNorm scales (1 + scale·N(0,1)), every other tensor is scale·N(0,1)."""
    for name, p in model.named_parameters():
        z = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        p.copy_(1 + scale * z if p.ndim == 1 and name.endswith("weight") else scale * z)
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--config", help="UNetModel keyword arguments as JSON")
    ap.add_argument("--keys", action="store_true", help="also list state-dict keys and shapes")
    args = ap.parse_args()
    cfg = dict(PRESETS[args.preset]) if args.preset else {}
    cfg.update(json.loads(args.config) if args.config else {})
    if "image_size" not in cfg:
        ap.error("give --preset or a --config with image_size")
    # The meta device records shapes without allocating or initialising (a 256 model is ~1-2 GB).
    model = UNetModel(**cfg, device="meta")
    if args.keys:
        for k, v in model.state_dict().items():
            print(k, list(v.shape))
    print(f"parameters: {count_parameters(model)}")


if __name__ == "__main__":
    main()
