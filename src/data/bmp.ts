// Windows BMP files: uncompressed (BI_RGB) 8-bit indexed, 24-bit and 32-bit pixels, stored
// bottom-up (positive height) or top-down (negative height). GlaS ships its images and gland
// annotations as BMPs; the annotations are 8-bit indexed with the gland id as the palette index,
// so `paletteIndices` returns the raw indices rather than colours.
import { checkLimit, type LimitError, resolveLimits } from "../io/limits.ts";
import { type Image, ImageError, type ReadOptions } from "./image.ts";

const BI_NAMES: Record<number, string> = {
  0: "BI_RGB",
  1: "BI_RLE8",
  2: "BI_RLE4",
  3: "BI_BITFIELDS",
  4: "BI_JPEG",
  5: "BI_PNG",
  6: "BI_ALPHABITFIELDS",
};

/** Whether the bytes start like a BMP file ("BM"). */
export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

/**
 * Decodes BMP bytes. 8-bit files give RGB from the palette, or with `paletteIndices` the raw
 * indices as a 1-channel image; 24-bit gives RGB; 32-bit gives RGB (the fourth byte of BI_RGB
 * pixels is reserved, not alpha, and is dropped, as PIL and Windows do). The pixel data must lie
 * in the file in full; the size is checked against `opts.maxPixels` (default 2^26) first. Throws an
 * ImageError naming `name` (its cause a LimitError when the limit was exceeded).
 */
export function decodeBmp(bytes: Uint8Array, name = "<bmp>", opts: ReadOptions = {}): Image {
  const limits = resolveLimits(opts);
  const fail = (problem: string): never => {
    throw new ImageError(name, `BMP: ${problem}`);
  };
  if (!isBmp(bytes)) fail("not a BMP file (missing 'BM' signature)");
  if (bytes.length < 26) fail(`truncated header (${bytes.length} bytes)`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataOffset = v.getUint32(10, true);
  const dib = v.getUint32(14, true);
  let width: number, height: number, planes: number, bpp: number, compression = 0, colorsUsed = 0;
  let paletteEntry = 4;
  if (dib === 12) { // BITMAPCOREHEADER (OS/2 1.x): 16-bit sizes, 3-byte palette entries
    width = v.getUint16(18, true);
    height = v.getInt16(20, true);
    planes = v.getUint16(22, true);
    bpp = v.getUint16(24, true);
    paletteEntry = 3;
  } else if (dib >= 40) { // BITMAPINFOHEADER and its V2-V5 extensions
    if (bytes.length < 14 + 40) fail(`truncated header (${bytes.length} bytes)`);
    width = v.getInt32(18, true);
    height = v.getInt32(22, true);
    planes = v.getUint16(26, true);
    bpp = v.getUint16(28, true);
    compression = v.getUint32(30, true);
    colorsUsed = v.getUint32(46, true);
  } else {
    return fail(`unsupported header size ${dib}`);
  }
  if (compression !== 0) {
    fail(`unsupported compression ${BI_NAMES[compression] ?? compression} (only uncompressed BI_RGB is supported)`);
  }
  if (planes !== 1) fail(`invalid plane count ${planes}`);
  if (bpp !== 8 && bpp !== 24 && bpp !== 32) fail(`unsupported bit depth ${bpp} (supported: 8, 24, 32)`);
  const topDown = height < 0;
  height = Math.abs(height);
  if (!(width > 0 && height > 0)) fail(`invalid size ${width}x${height}`);
  try {
    checkLimit(limits, "maxPixels", width * height, `an image of ${width}x${height} pixels`);
  } catch (e) {
    throw new ImageError(name, `BMP: ${(e as LimitError).message}`, { cause: e });
  }
  const stride = Math.ceil((width * bpp) / 32) * 4; // rows are padded to 4 bytes
  const need = stride * height;
  if (dataOffset + need > bytes.length) {
    fail(`truncated pixel data: ${need} bytes needed at offset ${dataOffset}, file has ${bytes.length}`);
  }
  const rowStart = (y: number) => dataOffset + (topDown ? y : height - 1 - y) * stride;

  if (bpp === 8) {
    const idx = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) idx.set(bytes.subarray(rowStart(y), rowStart(y) + width), y * width);
    if (opts.paletteIndices) return { width, height, channels: 1, data: idx };
    const palStart = 14 + dib;
    const entries = colorsUsed || 256;
    const available = Math.floor((Math.min(dataOffset, bytes.length) - palStart) / paletteEntry);
    const n = Math.min(entries, Math.max(0, available));
    const out = new Uint8Array(width * height * 3);
    for (let i = 0; i < idx.length; i++) {
      const k = idx[i];
      if (k >= n) {
        fail(`palette index ${k} out of range (${n} entries) at pixel ${i % width}, ${Math.floor(i / width)}`);
      }
      const p = palStart + k * paletteEntry; // entries are B, G, R(, reserved)
      out[3 * i] = bytes[p + 2];
      out[3 * i + 1] = bytes[p + 1];
      out[3 * i + 2] = bytes[p];
    }
    return { width, height, channels: 3, data: out };
  }
  const step = bpp / 8;
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const r0 = rowStart(y);
    for (let x = 0; x < width; x++) {
      const s = r0 + x * step, d = (y * width + x) * 3; // stored B, G, R(, X)
      out[d] = bytes[s + 2];
      out[d + 1] = bytes[s + 1];
      out[d + 2] = bytes[s];
    }
  }
  return { width, height, channels: 3, data: out };
}
