// Whether this libtorch can run a UNet torso in a reduced precision on a device, tried on a tiny
// UNet before a program builds its real one: libtorch 1.x has no float16 convolutions on a CPU,
// which would otherwise surface as a TorchError at the first step.
import type { Device } from "../device.ts";
import { TorchError } from "../error.ts";
import { noGrad } from "../autograd.ts";
import { zeros } from "../create.ts";
import { tidy } from "../scope.ts";
import { UNet } from "../models/unet/unet.ts";
import { rootBuilder } from "../nn/module.ts";
import type { UNetConfig } from "../models/unet/config.ts";
import { UsageError } from "./args.ts";

/**
 * Runs a forward pass (and a backward one when `backward`) of a one-level UNet whose torso computes
 * in `dtype` on `device`.
 * @throws UsageError naming --torso-dtype (or `source`, where the setting came from) when libtorch
 * refuses an operation.
 */
export function probeTorsoDtype(
  dtype: UNetConfig["torsoDtype"],
  device: Device,
  opts: { backward: boolean; source?: string },
): void {
  if (dtype === "float32") return;
  let model: UNet | null = null;
  try {
    model = new UNet({
      imageSize: 8,
      modelChannels: 32,
      channelMult: [1],
      numResBlocks: 1,
      attentionResolutions: [8],
      numHeadChannels: 32,
      torsoDtype: dtype,
    }, rootBuilder({ device }));
    const unet = model;
    tidy(() => {
      const x = zeros([1, 3, 8, 8], { device }), t = zeros([1], { dtype: "int64", device });
      if (opts.backward) unet.forward(x, t).output!.sum().backward();
      else noGrad(() => unet.forward(x, t));
    });
  } catch (e) {
    if (!(e instanceof TorchError)) throw e;
    throw new UsageError(
      `${opts.source ?? "--torso-dtype"} ${dtype}: this libtorch cannot run it on ${device} (${
        e.torchMessage.split("\n")[0]
      })` +
        (device === "cpu" && dtype === "float16" ? "; use bfloat16 on a CPU" : ""),
    );
  } finally {
    for (const p of model?.stateDict().values() ?? []) p.dispose();
  }
}
