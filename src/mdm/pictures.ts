// The progress pictures: what the model makes of corrupted images at a few timesteps, with the
// corruption drawn from fixed seeds, laid out with captions (which column is the clean input, the
// corrupted input and the output, at which timestep).
import { noGrad } from "../autograd.ts";
import type { Image } from "../data/pixels.ts";
import { drawText, GLYPH_HEIGHT, textWidth } from "../data/text.ts";
import { full } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { Generator } from "../random.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { Pretrainer } from "./pretrain.ts";

type Images = Tensor<FloatDType, Device>;

/**
 * The corrupted input and the model's output for clean images `x0` [B, 3, S, S] at each timestep
 * of `ts`, with the raw or the EMA weights. The corruption comes from a fixed seed: pictures from
 * different steps show the same masks, and training's streams are left untouched.
 */
export function reconstruct(
  trainer: Pretrainer,
  x0: Images,
  ts: readonly number[],
  weights: "model" | "ema" = "model",
): { t: number; input: Images; output: Images }[] {
  const { model, corruption, options } = trainer;
  return noGrad(() =>
    tidy(() => {
      const swapBack = weights === "ema" ? trainer.ema.swapIntoModel() : null;
      using mask = new Generator(options.seed + 7919, options.device);
      using noise = new Generator(options.seed + 7920, options.device);
      try {
        model.eval();
        return ts.map((t) => {
          const steps = full([x0.size(0)], t, { dtype: "int64", device: x0.device });
          const { input } = corruption.apply(x0, steps, { mask, noise });
          return { t, input, output: model.forward(input, steps).output! };
        });
      } finally {
        model.train();
        swapBack?.();
      }
    })
  );
}

/** One timestep's columns of a reconstruction picture: the corrupted inputs and the model's outputs. */
export interface PictureColumn {
  t: number;
  inputs: Image[];
  outputs: Image[];
}

/** Pixels between tiles and around the picture. */
export const PICTURE_GAP = 4;

/** Where the parts of a reconstruction picture go (see reconstructionPicture). */
export function pictureLayout(rows: number, columns: number, tile: number): {
  width: number;
  height: number;
  /** Top-left corner of tile (row r, column c). */
  tileAt: (r: number, c: number) => [number, number];
  /** Top of the title line and of the two caption lines. */
  titleY: number;
  timestepY: number;
  kindY: number;
} {
  const gap = PICTURE_GAP;
  const left = gap + textWidth(String(rows)) + gap;
  const titleY = gap, timestepY = titleY + GLYPH_HEIGHT + gap, kindY = timestepY + GLYPH_HEIGHT + 2;
  const top = kindY + GLYPH_HEIGHT + gap;
  return {
    width: left + columns * tile + (columns - 1) * gap + gap,
    height: top + rows * tile + (rows - 1) * gap + gap,
    tileAt: (r, c) => [left + c * (tile + gap), top + r * (tile + gap)],
    titleY,
    timestepY,
    kindY,
  };
}

/**
 * The progress picture of a pre-training, captioned: one row per image (numbered on the left),
 * the clean image ("input") in the first column, then for each timestep the corrupted image
 * ("masked" for MDM, "noised" for DDPM) and the model's reconstruction ("output"), each pair
 * headed "t=<timestep>", under a title naming the method and step. Tiles narrower than a caption
 * get its short form ("in", "mask" or "noise", "out"). Images are RGB squares of one size; white
 * background, black text.
 */
export function reconstructionPicture(
  originals: readonly Image[],
  columns: readonly PictureColumn[],
  caption: { method: "mdm" | "ddpm"; step: number },
): Image {
  const tile = originals[0]?.width;
  const cells = [originals, ...columns.flatMap((c) => [c.inputs, c.outputs])];
  for (const col of cells) {
    if (col.length !== originals.length) throw new RangeError("reconstructionPicture: columns of different lengths");
    for (const img of col) {
      if (img.width !== tile || img.height !== tile || img.channels !== 3) {
        throw new RangeError(`reconstructionPicture: tiles must be ${tile}×${tile} RGB`);
      }
    }
  }
  const L = pictureLayout(originals.length, cells.length, tile);
  const out: Image = { width: L.width, height: L.height, channels: 3, data: new Uint8Array(L.width * L.height * 3) };
  out.data.fill(255);
  cells.forEach((col, c) =>
    col.forEach((img, r) => {
      const [x0, y0] = L.tileAt(r, c);
      for (let y = 0; y < tile; y++) {
        out.data.set(img.data.subarray(y * tile * 3, (y + 1) * tile * 3), ((y0 + y) * L.width + x0) * 3);
      }
    })
  );
  drawText(out, PICTURE_GAP, L.titleY, `${caption.method} step ${caption.step}`);
  // Captions centred over their columns, the longest form that fits in a tile's width (clipped to
  // the columns and half the gaps beside them if none does).
  const label = (c: number, span: number, y: number, forms: string[]) => {
    const [x] = L.tileAt(0, c);
    const width = span * tile + (span - 1) * PICTURE_GAP;
    const text = forms.find((f) => textWidth(f) <= width - 2) ?? forms.at(-1)!;
    const clip = { x0: x - PICTURE_GAP / 2, y0: 0, x1: x + width + PICTURE_GAP / 2, y1: L.height };
    drawText(out, x + Math.floor((width - textWidth(text)) / 2), y, text, [0, 0, 0], clip);
  };
  label(0, 1, L.kindY, ["input", "in"]);
  columns.forEach((col, k) => {
    label(1 + 2 * k, 2, L.timestepY, [`t=${col.t}`, String(col.t)]);
    label(1 + 2 * k, 1, L.kindY, caption.method === "mdm" ? ["masked", "mask"] : ["noised", "noise"]);
    label(2 + 2 * k, 1, L.kindY, ["output", "out"]);
  });
  originals.forEach((_, r) => {
    const [, y] = L.tileAt(r, 0);
    drawText(out, PICTURE_GAP, y + Math.floor((tile - GLYPH_HEIGHT) / 2), String(r + 1));
  });
  return out;
}
