// The image data layer: decoding PNG/JPEG/TIFF against files and pixels made independently (by
// Python/PIL, by hand-built bytes, or the real MoNuSeg TIFFs), errors that name the file, the
// random-crop loader's geometry/reproducibility/resume, and the synthetic H&E dataset.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { decodeImage, type Image, ImageError, readImage, toRGB, writePng } from "../src/data/image.ts";
import { listImages, type LoaderState, RandomCropLoader } from "../src/data/folder.ts";
import { Rng } from "../src/data/rng.ts";
import { ensureSyntheticDataset, generateSynthetic } from "../src/data/synthetic.ts";
import { decodeBmp } from "../src/data/bmp.ts";
import { decodeNpy, NpyError } from "../src/data/npy.ts";
import { AnnotationError, parseMoNuSegXml, rasterizeRegions } from "../src/data/polygons.ts";
import { DEFAULT_LIMITS, LimitError } from "../src/io/limits.ts";
import { bmpFile, monusegXml, npyFile, PNG_SIGNATURE, pngChunk, pngFile, tiffFile } from "./helpers/fuzz_files.ts";
import { createDeflate } from "node:zlib";

const PYTHON = Deno.env.get("MDM_PYTHON") ?? "/usr/bin/python3";
const MONUSEG = Deno.env.get("MDM_MONUSEG") ?? new URL("../../shared/data/monuseg", import.meta.url).pathname;

function pythonHasPIL(): boolean {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import PIL, numpy"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const HAVE_PIL = pythonHasPIL();
const HAVE_MONUSEG = [`${MONUSEG}/train/images`, `${MONUSEG}/test/images`].every((d) => {
  try {
    return Deno.statSync(d).isDirectory;
  } catch {
    return false;
  }
});
if (!HAVE_PIL) console.log(`data_test: skipping PIL reference tests: ${PYTHON} cannot import PIL and numpy`);
if (!HAVE_MONUSEG) console.log(`data_test: skipping MoNuSeg TIFF tests: ${MONUSEG}/{train,test}/images not found`);

/** Runs Python (with PIL and numpy) in `cwd`; returns stdout. */
async function python(code: string, cwd: string): Promise<string> {
  const out = await new Deno.Command(PYTHON, { args: ["-c", code], cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`python failed:\n${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mdm_data_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts that `fn` rejects with an ImageError whose message names `path` and matches `problem`. */
async function assertImageError(fn: () => Promise<unknown>, path: string, problem: RegExp): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
    assert.ok(e.message.startsWith(`${path}: `), `message should name ${path}: ${e.message}`);
    assert.match(e.message, problem);
    return true;
  });
}

// A deterministic test pattern independent of the code under test.
function pattern(w: number, h: number, c: number, salt = 0): Image {
  const data = new Uint8Array(w * h * c);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919 + salt * 104729 + (i >> 5)) % 256;
  return { width: w, height: h, channels: c as 1 | 3 | 4, data };
}

// ---------------------------------------------------------------- PNG

Deno.test("png: gray, RGB and RGBA round trip byte-exact; the write leaves no temporary file", async () => {
  await withTempDir(async (dir) => {
    for (const [c, name] of [[1, "gray"], [3, "rgb"], [4, "rgba"]] as const) {
      const img = pattern(37, 23, c, c);
      const path = `${dir}/${name}.png`;
      await writePng(path, img);
      const back = await readImage(path);
      assert.deepEqual([back.width, back.height, back.channels], [37, 23, c]);
      assert.deepEqual(back.data, img.data);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["gray.png", "rgb.png", "rgba.png"]);
  });
});

Deno.test({
  name: "png: files written by writePng decode identically in PIL",
  ignore: !HAVE_PIL,
  fn: () =>
    withTempDir(async (dir) => {
      const img = pattern(41, 19, 3, 5);
      await writePng(`${dir}/a.png`, img);
      const out = await python(
        "import numpy as np; from PIL import Image; a = np.asarray(Image.open('a.png')); " +
          "print(a.shape, __import__('hashlib').sha256(a.tobytes()).hexdigest())",
        dir,
      );
      const sha = createHash("sha256").update(img.data).digest("hex");
      assert.equal(out.trim(), `(19, 41, 3) ${sha}`);
    }),
});

// Fixtures written by PIL (and a 16-bit RGB PNG by a minimal zlib writer, which PIL cannot make).
// Values: 16-bit samples are k * 257, which any correct 16->8 reduction maps to exactly k.
const PNG_FIXTURES = `
import numpy as np, zlib, struct
from PIL import Image
y, x = np.mgrid[0:13, 0:21]
k = ((x * 13 + y * 7) % 256).astype(np.uint16)
Image.fromarray((k * 257).astype(np.uint16)).save('g16.png')          # mode I;16 -> 16-bit gray
rgb16 = np.stack([k, 255 - k, (k * 3) % 256], -1).astype('>u2') * 257
raw = b''.join(b'\\x00' + rgb16[r].tobytes() for r in range(13))
chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
open('rgb16.png', 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 21, 13, 16, 2, 0, 0, 0))
    + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
pal = [v for j in range(256) for v in ((j * 3) % 256, (j * 5 + 1) % 256, 255 - j)]
idx = ((x * 11 + y * 3) % 200).astype(np.uint8)
p = Image.fromarray(idx, 'L').convert('P'); p.putpalette(pal); p.save('pal8.png')
idx4 = ((x + y) % 16).astype(np.uint8)
p4 = Image.fromarray(idx4, 'L').convert('P'); p4.putpalette(pal[:48]); p4.save('pal4.png', bits=4)
p.save('palt.png', transparency=bytes([(j * 9) % 256 for j in range(200)]))
Image.fromarray(((x + y) % 3 == 0)).save('bw1.png')                     # mode 1 -> 1-bit gray
Image.fromarray(np.stack([k.astype(np.uint8), (255 - k).astype(np.uint8)], -1), 'LA').save('la.png')
`;

Deno.test({
  name: "png: 16-bit gray/RGB, palette (8-, 4-bit, with alpha), 1-bit gray and gray+alpha written by Python",
  ignore: !HAVE_PIL,
  fn: () =>
    withTempDir(async (dir) => {
      await python(PNG_FIXTURES, dir);
      const W = 21, H = 13, n = W * H;
      const at = (f: (x: number, y: number) => number) =>
        Uint8Array.from({ length: n }, (_, i) => f(i % W, (i / W) | 0));
      const k = at((x, y) => (x * 13 + y * 7) % 256);
      const palette = (j: number) => [(j * 3) % 256, (j * 5 + 1) % 256, 255 - j];
      const interleave = (...planes: Uint8Array[]) =>
        Uint8Array.from({ length: n * planes.length }, (_, i) => planes[i % planes.length][(i / planes.length) | 0]);

      assert.equal((await Deno.readFile(`${dir}/g16.png`))[24], 16, "fixture should really be a 16-bit PNG");
      const g16 = await readImage(`${dir}/g16.png`);
      assert.deepEqual([g16.width, g16.height, g16.channels], [W, H, 1]);
      assert.deepEqual(g16.data, k);

      const rgb16 = await readImage(`${dir}/rgb16.png`);
      assert.equal(rgb16.channels, 3);
      assert.deepEqual(rgb16.data, interleave(k, k.map((v) => 255 - v), k.map((v) => (v * 3) % 256)));

      const idx = at((x, y) => (x * 11 + y * 3) % 200);
      const pal8 = await readImage(`${dir}/pal8.png`);
      assert.equal(pal8.channels, 3);
      assert.deepEqual(pal8.data, Uint8Array.from([...idx].flatMap(palette)));
      assert.deepEqual((await readImage(`${dir}/pal8.png`, { paletteIndices: true })).data, idx);

      const bytes4 = await Deno.readFile(`${dir}/pal4.png`);
      assert.equal(bytes4[24], 4, "fixture should really be a 4-bit PNG");
      const pal4 = await readImage(`${dir}/pal4.png`);
      assert.deepEqual(pal4.data, Uint8Array.from([...at((x, y) => (x + y) % 16)].flatMap(palette)));

      const palt = await readImage(`${dir}/palt.png`);
      assert.equal(palt.channels, 4);
      assert.deepEqual(palt.data, Uint8Array.from([...idx].flatMap((j) => [...palette(j), (j * 9) % 256])));

      const bw = await readImage(`${dir}/bw1.png`);
      assert.equal((await Deno.readFile(`${dir}/bw1.png`))[24], 1, "fixture should really be a 1-bit PNG");
      assert.deepEqual(bw.data, at((x, y) => ((x + y) % 3 === 0 ? 255 : 0)));

      const la = await readImage(`${dir}/la.png`);
      assert.equal(la.channels, 4);
      assert.deepEqual(la.data, interleave(k, k, k, k.map((v) => 255 - v)));
    }),
});

// ---------------------------------------------------------------- JPEG

Deno.test({
  name: "jpeg: RGB (4:2:0 and 4:4:4) and grayscale decode within rounding of PIL (libjpeg)",
  ignore: !HAVE_PIL,
  fn: () =>
    withTempDir(async (dir) => {
      await python(
        `
import numpy as np
from PIL import Image
y, x = np.mgrid[0:48, 0:64]
a = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
for name, img, kw in [('c420', a, dict(quality=90)), ('c444', a, dict(quality=90, subsampling=0)),
                      ('gray', a[:, :, 0], dict(quality=90))]:
    img = Image.fromarray(img); img.save(name + '.jpg', **kw)
    np.asarray(Image.open(name + '.jpg').convert('RGB')).tofile(name + '.raw')
`,
        dir,
      );
      for (const name of ["c420", "c444", "gray"]) {
        const img = await readImage(`${dir}/${name}.jpg`);
        const ref = await Deno.readFile(`${dir}/${name}.raw`);
        assert.deepEqual([img.width, img.height, img.channels], [64, 48, 3], name);
        // Decoders differ in IDCT rounding and chroma upsampling, so compare within a margin.
        let sum = 0, max = 0;
        for (let i = 0; i < ref.length; i++) {
          const d = Math.abs(img.data[i] - ref[i]);
          sum += d;
          max = Math.max(max, d);
        }
        assert.ok(sum / ref.length < 2, `${name}: mean |diff| ${sum / ref.length}`);
        assert.ok(max <= 16, `${name}: max |diff| ${max}`);
      }
      // A cut file must fail rather than come back partly grey.
      const bytes = await Deno.readFile(`${dir}/c420.jpg`);
      await Deno.writeFile(`${dir}/cut.jpg`, bytes.slice(0, Math.floor(bytes.length * 0.9)));
      await assertImageError(() => readImage(`${dir}/cut.jpg`), `${dir}/cut.jpg`, /corrupt or truncated JPEG/);
    }),
});

// ---------------------------------------------------------------- TIFF

/** A little-endian, uncompressed, single-strip TIFF built by hand (no library involved). */
function handTiff(w: number, h: number, spp: number, bps: number, photometric: number, pixels: Uint8Array): Uint8Array {
  const entries: [number, number, number, number][] = []; // tag, type (3 SHORT, 4 LONG), count, value/offset
  const nEntries = 9, ifdEnd = 8 + 2 + nEntries * 12 + 4;
  const bpsOffset = ifdEnd, dataOffset = bpsOffset + 2 * spp;
  entries.push([256, 4, 1, w], [257, 4, 1, h], [258, 3, spp, spp === 1 ? bps : bpsOffset], [259, 3, 1, 1]);
  entries.push([262, 3, 1, photometric], [273, 4, 1, dataOffset], [277, 3, 1, spp], [278, 4, 1, h]);
  entries.push([279, 4, 1, pixels.length]);
  const buf = new Uint8Array(dataOffset + pixels.length);
  const v = new DataView(buf.buffer);
  buf.set([0x49, 0x49, 42, 0]);
  v.setUint32(4, 8, true);
  v.setUint16(8, nEntries, true);
  entries.forEach(([tag, type, count, value], i) => {
    const o = 10 + 12 * i;
    v.setUint16(o, tag, true);
    v.setUint16(o + 2, type, true);
    v.setUint32(o + 4, count, true);
    if (type === 3 && count === 1) v.setUint16(o + 8, value, true);
    else v.setUint32(o + 8, value, true);
  });
  for (let s = 0; s < spp; s++) v.setUint16(bpsOffset + 2 * s, bps, true);
  buf.set(pixels, dataOffset);
  return buf;
}

Deno.test("tiff: hand-built uncompressed RGB, gray and WhiteIsZero files decode exactly", () => {
  const rgb = pattern(5, 4, 3, 1);
  const a = decodeImage(handTiff(5, 4, 3, 8, 2, rgb.data), "rgb.tif");
  assert.deepEqual([a.width, a.height, a.channels], [5, 4, 3]);
  assert.deepEqual(a.data, rgb.data);
  const gray = pattern(6, 3, 1, 2);
  assert.deepEqual(decodeImage(handTiff(6, 3, 1, 8, 1, gray.data), "g.tif").data, gray.data);
  // Photometric 0 (WhiteIsZero) stores 255 - intensity.
  assert.deepEqual(decodeImage(handTiff(6, 3, 1, 8, 0, gray.data), "w.tif").data, gray.data.map((x) => 255 - x));
});

Deno.test({
  name: "tiff: PIL-written LZW (+predictor), PackBits, Deflate, RGBA and 16-bit gray files decode exactly",
  ignore: !HAVE_PIL,
  fn: () =>
    withTempDir(async (dir) => {
      await python(
        `
import numpy as np
from PIL import Image
y, x = np.mgrid[0:30, 0:40]
rgb = np.stack([(x * 6) % 256, (y * 8) % 256, (x * y) % 256], -1).astype(np.uint8)
rgb.tofile('rgb.raw')
Image.fromarray(rgb).save('lzw_pred.tif', compression='tiff_lzw', tiffinfo={317: 2})
Image.fromarray(rgb).save('lzw.tif', compression='tiff_lzw')
Image.fromarray(rgb).save('packbits.tif', compression='packbits')
Image.fromarray(rgb).save('deflate.tif', compression='tiff_adobe_deflate')
rgba = np.concatenate([rgb, ((x + y) % 256).astype(np.uint8)[..., None]], -1)
rgba.tofile('rgba.raw')
Image.fromarray(rgba).save('rgba.tif', compression='tiff_lzw')
Image.fromarray(rgb[:, :, 0]).save('gray.tif', compression='packbits')
Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save('gray16.tif')
for f in ['lzw_pred', 'lzw', 'packbits', 'deflate']:
    t = Image.open(f + '.tif').tag_v2; print(f, t.get(259), t.get(317))
`,
        dir,
      );
      const rgb = await Deno.readFile(`${dir}/rgb.raw`);
      for (const f of ["lzw_pred", "lzw", "packbits", "deflate"]) {
        const img = await readImage(`${dir}/${f}.tif`);
        assert.deepEqual([img.width, img.height, img.channels], [40, 30, 3], f);
        assert.deepEqual(img.data, rgb, f);
      }
      assert.deepEqual((await readImage(`${dir}/rgba.tif`)).data, await Deno.readFile(`${dir}/rgba.raw`));
      const red = rgb.filter((_, i) => i % 3 === 0);
      for (const f of ["gray", "gray16"]) {
        const g = await readImage(`${dir}/${f}.tif`);
        assert.equal(g.channels, 1, f);
        assert.deepEqual(g.data, red, f);
      }
    }),
});

async function monusegFiles(split: string): Promise<string[]> {
  return (await listImages(`${MONUSEG}/${split}/images`)).filter((p) => p.endsWith(".tif"));
}

Deno.test({
  name: "tiff: every MoNuSeg image (train LZW + predictor 2, test PackBits) is 1000x1000 RGB tissue",
  ignore: !HAVE_MONUSEG,
  fn: async () => {
    for (const [split, count] of [["train", 30], ["test", 14]] as const) {
      const files = await monusegFiles(split);
      assert.equal(files.length, count, split);
      for (const f of files) {
        const img = await readImage(f);
        assert.deepEqual([img.width, img.height, img.channels], [1000, 1000, 3], f);
        // H&E tissue: neither blank nor saturated, and with real contrast.
        let sum = 0, sq = 0;
        for (const v of img.data) {
          sum += v;
          sq += v * v;
        }
        const mean = sum / img.data.length, std = Math.sqrt(sq / img.data.length - mean * mean);
        assert.ok(mean > 60 && mean < 240 && std > 15, `${f}: mean ${mean} std ${std}`);
      }
    }
  },
});

Deno.test({
  name: "tiff: every MoNuSeg train (LZW) and test (PackBits) image matches PIL byte for byte",
  ignore: !HAVE_MONUSEG || !HAVE_PIL,
  fn: async () => {
    const files = [...await monusegFiles("train"), ...await monusegFiles("test")];
    const out = await python(
      "import sys, hashlib, numpy as np; from PIL import Image\n" +
        `for f in ${
          JSON.stringify(files)
        }: print(hashlib.sha256(np.asarray(Image.open(f).convert('RGB')).tobytes()).hexdigest())`,
      Deno.cwd(),
    );
    const ours = await Promise.all(
      files.map(async (f) => createHash("sha256").update((await readImage(f)).data).digest("hex")),
    );
    assert.deepEqual(ours, out.trim().split("\n"));
  },
});

// ---------------------------------------------------------------- errors

Deno.test("errors: empty, garbage, truncated and corrupt files are ImageErrors naming the file and problem", async () => {
  await withTempDir(async (dir) => {
    const png = await (async () => {
      await writePng(`${dir}/ok.png`, pattern(40, 30, 3));
      return await Deno.readFile(`${dir}/ok.png`);
    })();
    const cases: [string, Uint8Array, RegExp][] = [
      ["empty.png", new Uint8Array(0), /empty file/],
      ["garbage.png", new TextEncoder().encode("this is not an image at all"), /unknown image format/],
      ["gif.png", new TextEncoder().encode("GIF89a\x01\x00\x01\x00"), /unknown image format/],
      ["half.png", png.slice(0, png.length >> 1), /PNG: truncated or corrupt data: chunk IDAT .* the file ends/],
      ["noend.png", png.slice(0, png.length - 12), /PNG: truncated or corrupt data: .* before the IEND chunk/],
      ["flipped.png", png.map((b, i) => (i === 60 ? b ^ 0xff : b)), /PNG: truncated or corrupt data: .*CRC/],
      ["cut.tif", handTiff(20, 10, 3, 8, 2, pattern(20, 10, 3).data).slice(0, 300), /truncated TIFF/],
      ["header.tif", new Uint8Array([0x49, 0x49, 42, 0, 0xff, 0, 0, 0]), /truncated TIFF/],
      ["depth4.tif", handTiff(4, 4, 1, 4, 1, new Uint8Array(8)), /unsupported TIFF bit depth 4/],
      ["jpeg.jpg", new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46]), /corrupt or truncated JPEG/],
    ];
    for (const [name, bytes, problem] of cases) {
      await Deno.writeFile(`${dir}/${name}`, bytes);
      await assertImageError(() => readImage(`${dir}/${name}`), `${dir}/${name}`, problem);
    }
    await assertImageError(() => readImage(`${dir}/missing.png`), `${dir}/missing.png`, /cannot read file/);
  });
});

Deno.test({
  name: "errors: a truncated MoNuSeg TIFF (directory at the end, now missing) is reported, not decoded",
  ignore: !HAVE_MONUSEG,
  fn: () =>
    withTempDir(async (dir) => {
      const src = await Deno.readFile((await monusegFiles("train"))[0]);
      await Deno.writeFile(`${dir}/cut.tif`, src.slice(0, src.length >> 1));
      await assertImageError(() => readImage(`${dir}/cut.tif`), `${dir}/cut.tif`, /truncated TIFF/);
    }),
});

// ---------------------------------------------------------------- hostile inputs (issue 11)

/** Asserts that `fn` throws an ImageError naming `name` and matching `problem`; returns it. */
function assertDecodeError(fn: () => unknown, name: string, problem: RegExp): ImageError {
  let caught: unknown;
  assert.throws(fn, (e: unknown) => {
    caught = e;
    assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
    assert.ok(e.message.startsWith(`${name}: `), `message should name ${name}: ${e.message}`);
    assert.match(e.message, problem);
    return true;
  });
  return caught as ImageError;
}

const grayTiff = (w: number, h: number, extra: Partial<Parameters<typeof tiffFile>[0]> = {}) =>
  tiffFile({
    width: w,
    height: h,
    spp: 1,
    bps: 8,
    photometric: 1,
    samples: pattern(w, h, 1, 3).data,
    compression: 1,
    rowsPerStrip: h,
    ...extra,
  }).bytes;

Deno.test("tiff: a directory whose next-IFD offset points at itself decodes its image once", () => {
  // Only the first directory is read: the self-loop that ran utif2 out of memory is never followed.
  const bytes = grayTiff(4, 3, { ifdFirst: true, nextIfd: 8 });
  assert.ok(bytes.length < 200, `a small file (${bytes.length} bytes)`);
  const img = decodeImage(bytes, "loop.tif");
  assert.deepEqual([img.width, img.height, img.channels], [4, 3, 1]);
  assert.deepEqual(img.data, pattern(4, 3, 1, 3).data);
});

Deno.test("tiff: 100000x100000 declared over a 16-byte strip is refused before anything is allocated", () => {
  const bytes = grayTiff(4, 4); // the strip is 16 bytes
  const v = new DataView(bytes.buffer);
  const ifd = v.getUint32(4, true);
  for (let i = 0; i < v.getUint16(ifd, true); i++) {
    const e = ifd + 2 + 12 * i, tag = v.getUint16(e, true);
    if (tag === 256 || tag === 257 || tag === 278) v.setUint32(e + 8, 100000, true);
  }
  const e = assertDecodeError(
    () => decodeImage(bytes, "huge.tif"),
    "huge.tif",
    /TIFF: an image of 100000x100000 pixels exceeds the limit maxPixels = 67108864/,
  );
  assert.ok(e.cause instanceof LimitError && e.cause.limit === "maxPixels");
  // With the limits lifted, the strips are still far too small for the declared size.
  assertDecodeError(
    () => decodeImage(bytes, "huge.tif", { maxPixels: Infinity, maxBytes: Infinity }),
    "huge.tif",
    /strips hold 16 bytes, which none cannot turn into the 10000000000 bytes/,
  );
});

Deno.test("tiff: cut files (directory at the end, as in MoNuSeg) are errors, never zero-filled", () => {
  for (const compression of [1, 5, 8, 32773] as const) {
    const whole = tiffFile({
      width: 40,
      height: 30,
      spp: 3,
      bps: 8,
      photometric: 2,
      samples: pattern(40, 30, 3, 4).data,
      compression,
      rowsPerStrip: 2,
      predictor: compression === 5 || compression === 8 ? 2 : undefined,
    }).bytes;
    assert.deepEqual(decodeImage(whole, "whole.tif").data, pattern(40, 30, 3, 4).data, `compression ${compression}`);
    // Every cut loses part of the directory, its strip tables or the strips themselves.
    for (const cut of [1, 4, 30, 100, 200, whole.length >> 1]) {
      assertDecodeError(() => decodeImage(whole.subarray(0, whole.length - cut), "cut.tif"), "cut.tif", /TIFF/);
    }
  }
  // A strip that ends early inside a compressed stream is found by decoding, not by the bounds.
  const lzw = tiffFile({
    width: 40,
    height: 30,
    spp: 3,
    bps: 8,
    photometric: 2,
    samples: pattern(40, 30, 3, 4).data,
    compression: 5,
    rowsPerStrip: 30,
    ifdFirst: true,
  }).bytes;
  const v = new DataView(lzw.buffer);
  const ifd = v.getUint32(4, true);
  for (let i = 0; i < v.getUint16(ifd, true); i++) {
    const e = ifd + 2 + 12 * i;
    if (v.getUint16(e, true) === 279) v.setUint32(e + 8, v.getUint32(e + 8, true) - 40, true);
  }
  assertDecodeError(
    () => decodeImage(lzw.subarray(0, lzw.length - 40), "short.tif"),
    "short.tif",
    /strip 0 decodes to \d+ of its 3600 bytes/,
  );
});

Deno.test({
  name: "tiff: a MoNuSeg TIFF with its last 100 bytes cut is an error, not 5% wrong pixels",
  ignore: !HAVE_MONUSEG,
  fn: async () => {
    for (const split of ["train", "test"]) {
      const path = (await monusegFiles(split))[0];
      const src = await Deno.readFile(path);
      assertDecodeError(() => decodeImage(src.subarray(0, src.length - 100), "cut.tif"), "cut.tif", /truncated TIFF/);
    }
  },
});

Deno.test("png: a tiny PNG declaring 2147483647x1 is refused, with or without the limits", () => {
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, 2147483647);
  new DataView(ihdr.buffer).setUint32(4, 1);
  ihdr.set([8, 0, 0, 0, 0], 8);
  const idat = Uint8Array.of(0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01); // zlib of one zero byte
  const bytes = new Uint8Array([
    ...PNG_SIGNATURE,
    ...pngChunk("IHDR", ihdr),
    ...pngChunk("IDAT", idat),
    ...pngChunk("IEND", new Uint8Array(0)),
  ]);
  assert.ok(bytes.length < 72, `${bytes.length} bytes`);
  const e = assertDecodeError(() => decodeImage(bytes, "wide.png"), "wide.png", /exceeds the limit maxPixels/);
  assert.ok(e.cause instanceof LimitError);
  // Lifted limits: 9 bytes of zlib data cannot hold 2 GB of pixels, so nothing is allocated.
  assertDecodeError(
    () => decodeImage(bytes, "wide.png", { maxPixels: Infinity, maxBytes: Infinity }),
    "wide.png",
    /9 bytes of IDAT data cannot inflate to the 2147483648 bytes/,
  );
  // A plausible width: the stream is inflated, found short, and not zero-filled.
  new DataView(ihdr.buffer).setUint32(0, 100);
  const narrow = new Uint8Array([
    ...PNG_SIGNATURE,
    ...pngChunk("IHDR", ihdr),
    ...pngChunk("IDAT", idat),
    ...pngChunk("IEND", new Uint8Array(0)),
  ]);
  assertDecodeError(() => decodeImage(narrow, "narrow.png"), "narrow.png", /inflates to 1 of the 101 bytes needed/);
});

Deno.test("png: a 390 KB 20000x20000 PNG is refused by maxPixels before it is inflated", async () => {
  // A real, valid file: 20000 rows of a filter byte and 20000 zero samples, deflated at level 9.
  const rows = new Uint8Array(20001 * 1000);
  const deflate = createDeflate({ level: 9 });
  const parts: Uint8Array[] = [];
  deflate.on("data", (c: Uint8Array) => parts.push(c));
  const ended = new Promise((resolve) => deflate.on("end", resolve));
  for (let i = 0; i < 20; i++) deflate.write(rows);
  deflate.end();
  await ended;
  const idat = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (idat.set(p, at), at + p.length), 0);
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, 20000);
  new DataView(ihdr.buffer).setUint32(4, 20000);
  ihdr.set([8, 0, 0, 0, 0], 8);
  const bytes = new Uint8Array([
    ...PNG_SIGNATURE,
    ...pngChunk("IHDR", ihdr),
    ...pngChunk("IDAT", idat),
    ...pngChunk("IEND", new Uint8Array(0)),
  ]);
  assert.ok(bytes.length > 380_000 && bytes.length < 400_000, `${bytes.length} bytes`);
  assertDecodeError(
    () => decodeImage(bytes, "big.png"),
    "big.png",
    /an image of 20000x20000 pixels exceeds the limit maxPixels/,
  );
  // The limit is the user's to raise: a 2000x2000 crop of the same kind decodes.
  const small = pngFile({ width: 2000, height: 2000, colourType: 0, depth: 8, samples: new Uint8Array(4e6) }).bytes;
  assert.equal(decodeImage(small, "small.png").data.length, 4e6);
  assertDecodeError(() => decodeImage(small, "small.png", { maxPixels: 1e6 }), "small.png", /maxPixels = 1000000/);
});

Deno.test("png: a palette image without PLTE is an error, not its indices as gray", () => {
  const spec = {
    width: 5,
    height: 4,
    colourType: 3 as const,
    depth: 8 as const,
    samples: pattern(5, 4, 1).data.map((v) => v % 3),
  };
  const palette = Uint8Array.of(255, 0, 0, 0, 255, 0, 0, 0, 255);
  const ok = decodeImage(pngFile({ ...spec, palette }).bytes, "pal.png");
  assert.deepEqual(ok.data, Uint8Array.from([...spec.samples].flatMap((k) => [...palette.subarray(3 * k, 3 * k + 3)])));
  for (const paletteIndices of [false, true]) {
    assertDecodeError(
      () => decodeImage(pngFile({ ...spec, palette, omitPalette: true }).bytes, "nopal.png", { paletteIndices }),
      "nopal.png",
      /palette image \(colour type 3\) without PLTE/,
    );
  }
});

Deno.test("png: hand-written files of every colour type and depth, interlaced or not, decode to their samples", () => {
  const W = 11, H = 6;
  const cases = [[0, 1], [0, 2], [0, 4], [0, 8], [0, 16], [2, 8], [2, 16], [3, 1], [3, 4], [3, 8], [4, 8], [4, 16], [
    6,
    8,
  ], [6, 16]] as const;
  for (const [colourType, depth] of cases) {
    const ch = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colourType];
    const max = colourType === 3 ? Math.min(2 ** depth, 4) - 1 : 2 ** depth - 1;
    const samples = Array.from({ length: W * H * ch }, (_, i) => (i * 40503 + (i >> 2)) % (max + 1));
    const palette = colourType === 3 ? Uint8Array.from({ length: 12 }, (_, i) => i * 21) : undefined;
    // Expected 8-bit values, computed from the samples alone.
    const eight = samples.map((v) => depth === 16 ? Math.round(v / 257) : depth < 8 ? (v * 255) / max : v);
    let expected: number[];
    if (colourType === 3) expected = samples.flatMap((k) => [...palette!.subarray(3 * k, 3 * k + 3)]);
    else if (colourType === 0 && depth < 8) expected = samples.map((v) => (v * 255) / (2 ** depth - 1));
    else if (colourType === 4) {
      expected = [];
      for (let i = 0; i < eight.length; i += 2) expected.push(eight[i], eight[i], eight[i], eight[i + 1]);
    } else expected = eight;
    for (const interlace of [false, true]) {
      const what = `type ${colourType}, depth ${depth}, ${interlace ? "interlaced" : "not interlaced"}`;
      const img = decodeImage(
        pngFile({ width: W, height: H, colourType, depth, samples, interlace, palette }).bytes,
        what,
      );
      assert.deepEqual(Array.from(img.data), expected, what);
    }
  }
});

Deno.test("bmp, npy, xml: declared sizes and nesting are checked against the limits", () => {
  const bmp = bmpFile(40, 30, pattern(40, 30, 3).data).bytes;
  assert.deepEqual(decodeBmp(bmp, "a.bmp").data, pattern(40, 30, 3).data);
  assert.throws(() => decodeBmp(bmp, "a.bmp", { maxPixels: 1000 }), (e: unknown) => {
    assert.ok(e instanceof ImageError && e.cause instanceof LimitError);
    assert.match(e.message, /^a\.bmp: BMP: an image of 40x30 pixels exceeds the limit maxPixels = 1000/);
    return true;
  });

  const data = new Uint8Array(12);
  const npy = (shape: string) => npyFile("<i4", shape, data).bytes;
  assert.deepEqual(decodeNpy(npy("3,"), "a.npy").shape, [3]);
  const npyCases: [string, RegExp][] = [
    ["99999999999999999999999,", /malformed shape/], // not an exact integer (was read as 1e23)
    ["0, 1" + "0".repeat(400), /malformed shape/], // Infinity times 0 made an empty array
    ["1000000000, 1000000000", /exceeds the limit maxBytes/],
    [new Array(65).fill(1).join(", "), /shape of 65 dimensions/],
  ];
  for (const [shape, problem] of npyCases) {
    assert.throws(() => decodeNpy(npy(shape), "b.npy"), (e: unknown) => {
      assert.ok(e instanceof NpyError, `${shape}: ${e}`);
      assert.match(e.message, /^b\.npy: /);
      assert.match(e.message, problem);
      return true;
    });
  }

  const deep = `<Annotations>${"<a>".repeat(2000)}${"</a>".repeat(2000)}<Regions/></Annotations>`;
  assert.throws(() => parseMoNuSegXml(deep, "deep.xml"), (e: unknown) => {
    assert.ok(e instanceof AnnotationError && e.cause instanceof LimitError);
    assert.match(e.message, /^deep\.xml: element nesting .* exceeds the limit maxDepth = 1000/);
    return true;
  });
  assert.equal(parseMoNuSegXml(deep, "deep.xml", { maxDepth: 5000 }).length, 0);
  const many = monusegXml([[[1, 1], [5, 1], [5, 5], [1, 5]]]);
  assert.throws(
    () => parseMoNuSegXml(many, "many.xml", { maxEntries: 4 }),
    /many\.xml: the regions and vertices .* maxEntries = 4/,
  );
  // A long run of digits that is not a number fails at once (the old pattern backtracked quadratically).
  const digits = monusegXml([[[1, 1], [5, 1], [5, 5]]]).replace('X="5"', `X="${"1".repeat(100_000)}x"`);
  assert.throws(() => parseMoNuSegXml(digits, "digits.xml"), /is not a number/);
});

Deno.test("xml: zero-area regions (collinear vertices) are skipped, as documented, and fill no pixel", () => {
  const regions = parseMoNuSegXml(
    monusegXml([
      [[1, 1], [4, 4], [7, 7]], // a diagonal line
      [[2, 5], [6, 5], [4, 5], [3, 5]], // a horizontal one, doubling back
      [[3, 3], [3, 3], [3, 3]], // one point
      [[1, 1], [6, 1], [6, 6], [1, 6]], // a square: the only real region
    ]),
    "lines.xml",
  );
  const r = rasterizeRegions(regions, { width: 9, height: 9, name: "lines.xml" });
  assert.equal(r.count, 1);
  assert.deepEqual(r.skipped.map((s) => [s.index, s.vertices]), [[0, 3], [1, 4], [2, 3]]);
  for (let y = 0; y < 9; y++) {
    for (let x = 0; x < 9; x++) {
      assert.equal(r.instances[y * 9 + x], x >= 1 && x <= 6 && y >= 1 && y <= 6 ? 1 : 0, `pixel ${x}, ${y}`);
    }
  }
});

Deno.test("limits: defaults are documented values, and invalid limits are TypeErrors", () => {
  assert.deepEqual({ ...DEFAULT_LIMITS }, {
    maxPixels: 2 ** 26,
    maxBytes: 2 ** 29,
    maxDepth: 1000,
    maxEntries: 1_000_000,
    maxIntegerDigits: 4300,
  });
  for (const bad of [0, -1, 1.5, NaN, "10"]) {
    assert.throws(() => decodeImage(new Uint8Array(8), "x.png", { maxPixels: bad as number }), TypeError);
  }
});

// ---------------------------------------------------------------- toRGB and listing

Deno.test("toRGB: gray is replicated, alpha dropped, RGB returned as is", () => {
  const g: Image = { width: 2, height: 1, channels: 1, data: new Uint8Array([10, 200]) };
  assert.deepEqual(toRGB(g).data, new Uint8Array([10, 10, 10, 200, 200, 200]));
  const rgba: Image = { width: 2, height: 1, channels: 4, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) };
  assert.deepEqual(toRGB(rgba), { width: 2, height: 1, channels: 3, data: new Uint8Array([1, 2, 3, 5, 6, 7]) });
  const rgb = pattern(3, 2, 3);
  assert.equal(toRGB(rgb), rgb);
});

Deno.test("listImages: recursive, image extensions only (any case), sorted", async () => {
  await withTempDir(async (dir) => {
    for (const d of ["b/deep", "a"]) await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    const files = ["z.png", "a/x.JPG", "a/y.jpeg", "b/deep/q.tif", "b/r.TIFF", "notes.txt", "a/m.npy", "b/deep/png"];
    for (const f of files) await Deno.writeFile(`${dir}/${f}`, new Uint8Array(1));
    assert.deepEqual(
      await listImages(dir),
      ["a/x.JPG", "a/y.jpeg", "b/deep/q.tif", "b/r.TIFF", "z.png"].map((f) => `${dir}/${f}`),
    );
    assert.deepEqual(await listImages(`${dir}/`), await listImages(dir));
  });
});

// ---------------------------------------------------------------- loader

// An image whose pixels spell out their coordinates (R = x, G = y, B = id), so every crop shows
// where it came from and whether it was mirrored.
function coordImage(w: number, h: number, id: number): Image {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) data.set([x, y, id], (y * w + x) * 3);
  }
  return { width: w, height: h, channels: 3, data };
}

/** A byte as the loader must scale it: the float32 nearest to x / 127.5 - 1. */
const scaled = (x: number) => Math.fround(x / 127.5 - 1);

interface Crop {
  x0: number;
  y0: number;
  flipped: boolean;
  id: number;
}

/** Reads crop b of a [B, 3, S, S] batch of coordinate images, checking it is one exact window. */
function readCrop(batch: Float32Array, b: number, s: number): Crop {
  const plane = s * s,
    at = (c: number, y: number, x: number) => Math.round((batch[(b * 3 + c) * plane + y * s + x] + 1) * 127.5);
  const flipped = s > 1 && at(0, 0, 1) < at(0, 0, 0);
  const x0 = flipped ? at(0, 0, s - 1) : at(0, 0, 0), y0 = at(1, 0, 0), id = at(2, 0, 0);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      const want = [x0 + (flipped ? s - 1 - x : x), y0 + y, id];
      for (let c = 0; c < 3; c++) {
        const v = batch[(b * 3 + c) * plane + y * s + x];
        assert.equal(v, scaled(want[c]), `crop ${b} channel ${c} at (${x}, ${y})`);
      }
    }
  }
  return { x0, y0, flipped, id };
}

const coordImages = (n: number, w = 90, h = 70) =>
  Array.from({ length: n }, (_, i) => ({ name: `img${i}`, image: coordImage(w, h, 10 * i) }));

Deno.test("loader: batches are [B, 3, S, S] float32 in [-1, 1], each crop an exact (possibly mirrored) window", () => {
  const s = 24;
  const loader = new RandomCropLoader(coordImages(3), { cropSize: s, seed: 1 });
  using t = loader.nextBatch(8);
  assert.deepEqual(t.shape, [8, 3, s, s]);
  assert.equal(t.dtype, "float32");
  const data = t.toArray() as Float32Array;
  assert.ok(data.every((v) => v >= -1 && v <= 1));
  const crops = Array.from({ length: 8 }, (_, b) => readCrop(data, b, s));
  for (const c of crops) assert.ok(c.x0 >= 0 && c.x0 <= 90 - s && c.y0 >= 0 && c.y0 <= 70 - s);
  // Full [0, 255] maps to the ends of [-1, 1].
  const ends = new RandomCropLoader([{
    name: "bw",
    image: { width: 2, height: 1, channels: 1, data: new Uint8Array([0, 255]) },
  }], {
    cropSize: 1,
  });
  const v = ends.nextBatchData(16);
  assert.ok(v.includes(-1) && v.includes(1) && v.every((x) => x === -1 || x === 1));
});

Deno.test("loader: flips happen about half the time, crops cover the image, flip: false never mirrors", () => {
  const s = 16, n = 400;
  const data = new RandomCropLoader(coordImages(2), { cropSize: s, seed: 7 }).nextBatchData(n);
  const crops = Array.from({ length: n }, (_, b) => readCrop(data, b, s));
  const flips = crops.filter((c) => c.flipped).length;
  assert.ok(flips > 140 && flips < 260, `${flips} of ${n} flipped`); // Binomial(400, 1/2): 10 sigma
  assert.equal(Math.min(...crops.map((c) => c.x0)), 0);
  assert.equal(Math.max(...crops.map((c) => c.x0)), 90 - s);
  assert.equal(Math.max(...crops.map((c) => c.y0)), 70 - s);
  const plain = new RandomCropLoader(coordImages(2), { cropSize: s, seed: 7, flip: false }).nextBatchData(64);
  assert.ok(Array.from({ length: 64 }, (_, b) => readCrop(plain, b, s)).every((c) => !c.flipped));
});

Deno.test("loader: every image once per epoch, in an order that changes between epochs", () => {
  const loader = new RandomCropLoader(coordImages(6), { cropSize: 8, seed: 3 });
  const orders: number[][] = [];
  for (let e = 0; e < 4; e++) {
    const data = loader.nextBatchData(6);
    orders.push(Array.from({ length: 6 }, (_, b) => readCrop(data, b, 8).id / 10));
    assert.deepEqual([...orders[e]].sort(), [0, 1, 2, 3, 4, 5], `epoch ${e}`);
  }
  assert.equal(loader.epoch, 3);
  assert.ok(new Set(orders.map((o) => o.join())).size > 1, "shuffled afresh each epoch");
});

Deno.test("loader: same seed gives the same batches; a different seed does not", () => {
  const a = new RandomCropLoader(coordImages(4), { cropSize: 20, seed: 42 });
  const b = new RandomCropLoader(coordImages(4), { cropSize: 20, seed: 42 });
  const c = new RandomCropLoader(coordImages(4), { cropSize: 20, seed: 43 });
  for (let i = 0; i < 3; i++) {
    const [x, y, z] = [a.nextBatchData(5), b.nextBatchData(5), c.nextBatchData(5)];
    assert.deepEqual(x, y);
    assert.notDeepEqual(x, z);
  }
});

Deno.test("loader: a state saved as JSON mid-epoch continues the exact sequence in a new loader", () => {
  const a = new RandomCropLoader(coordImages(5), { cropSize: 12, seed: 9 });
  a.nextBatchData(3);
  a.nextBatchData(4); // into the second epoch, mid-way
  const saved = JSON.parse(JSON.stringify(a.getState())) as LoaderState;
  const expected = [a.nextBatchData(4), a.nextBatchData(7)];
  const b = new RandomCropLoader(coordImages(5), { cropSize: 12, seed: 12345 });
  b.setState(saved);
  assert.deepEqual([b.nextBatchData(4), b.nextBatchData(7)], expected);
  assert.throws(() => b.setState({ ...saved, order: [0, 1] }), /does not fit/);
});

Deno.test("rng: xoshiro128** reference outputs; state round trip; int is in range and unbiased-looking", () => {
  // Published reference: xoshiro128** from state {1, 2, 3, 4}.
  const r = Rng.fromState({ kind: "xoshiro128**", s: [1, 2, 3, 4] });
  assert.deepEqual([r.u32(), r.u32(), r.u32(), r.u32()], [11520, 0, 5927040, 70819200]);
  const a = new Rng(2024), b = Rng.fromState(JSON.parse(JSON.stringify(a.getState())));
  assert.deepEqual(Array.from({ length: 5 }, () => a.next()), Array.from({ length: 5 }, () => b.next()));
  const counts = new Array(7).fill(0);
  for (let i = 0; i < 7000; i++) counts[a.int(7)]++;
  assert.ok(counts.every((c) => c > 850 && c < 1150), `counts ${counts}`);
  assert.notDeepEqual(new Rng(1).getState(), new Rng(2 ** 32 + 1).getState());
});

Deno.test("loader: images smaller than the crop are an error naming the file and both sizes", async () => {
  await withTempDir(async (dir) => {
    await writePng(`${dir}/big.png`, pattern(40, 40, 3));
    await writePng(`${dir}/small.png`, pattern(30, 20, 3));
    await assert.rejects(
      () => RandomCropLoader.fromDir(dir, { cropSize: 32 }),
      (e: Error) =>
        e.message.includes(`${dir}/small.png`) && e.message.includes("30x20") && e.message.includes("32x32"),
    );
    await assert.rejects(() => RandomCropLoader.fromDir(`${dir}/none`, { cropSize: 8 }), /No such file|not found/i);
  });
});

Deno.test("loader: padSmall reflects (or zero-fills) small images up to the crop, centred", () => {
  const img = coordImage(26, 28, 5); // padded to 32: 3 left, 3 right; 2 top, 2 bottom
  const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  for (const mode of [true, "zero"] as const) {
    const loader = new RandomCropLoader([{ name: "small", image: img }], { cropSize: 32, padSmall: mode, flip: false });
    const data = loader.nextBatchData(1), plane = 32 * 32;
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        const sx = x - 3, sy = y - 2, inside = sx >= 0 && sx < 26 && sy >= 0 && sy < 28;
        const want = mode === "zero" && !inside ? [0, 0, 0] : [reflect(sx, 26), reflect(sy, 28), 5];
        for (let c = 0; c < 3; c++) {
          assert.equal(data[c * plane + y * 32 + x], scaled(want[c]), `${mode} (${x}, ${y}) c${c}`);
        }
      }
    }
  }
});

Deno.test("loader: grayscale images become three equal channels; fromDir reads a folder", async () => {
  await withTempDir(async (dir) => {
    const g = pattern(16, 16, 1);
    await writePng(`${dir}/g.png`, g);
    const loader = await RandomCropLoader.fromDir(dir, { cropSize: 16, flip: false });
    assert.deepEqual(loader.names, [`${dir}/g.png`]);
    const data = loader.nextBatchData(1), plane = 256;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) assert.equal(data[c * plane + i], scaled(g.data[i]));
    }
  });
});

// ---------------------------------------------------------------- synthetic

const luma = (img: Image, i: number) => (img.data[3 * i] + img.data[3 * i + 1] + img.data[3 * i + 2]) / 3;

Deno.test("synthetic: byte-identical for a seed, different for another, tiles independent of count", () => {
  const a = generateSynthetic({ count: 3, size: 64, seed: 11 });
  const b = generateSynthetic({ count: 3, size: 64, seed: 11 });
  const c = generateSynthetic({ count: 2, size: 64, seed: 12 });
  const d = generateSynthetic({ count: 2, size: 64, seed: 11 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a[0].image.data, c[0].image.data);
  assert.deepEqual(d, a.slice(0, 2));
});

Deno.test("synthetic: masks are binary, match the instance maps, sit on dark nuclei, cover 10-35% of a tile", () => {
  const tiles = generateSynthetic({ count: 10, size: 256, seed: 0 });
  const fractions: number[] = [];
  let touching = 0;
  for (const [t, s] of tiles.entries()) {
    assert.deepEqual([s.image.width, s.image.height, s.image.channels, s.mask.channels], [256, 256, 3, 1]);
    let fg = 0, inSum = 0, outSum = 0;
    const ids = new Set<number>();
    for (let i = 0; i < 256 * 256; i++) {
      const m = s.mask.data[i], id = s.instances[i];
      assert.ok(m === 0 || m === 1);
      assert.equal(m, id > 0 ? 1 : 0, `tile ${t} pixel ${i}`);
      if (id > 0) ids.add(id);
      if (id > 0 && i % 256 < 255 && s.instances[i + 1] > 0 && s.instances[i + 1] !== id) touching++;
      fg += m;
      if (m) inSum += luma(s.image, i);
      else outSum += luma(s.image, i);
    }
    const frac = fg / (256 * 256), meanIn = inSum / fg, meanOut = outSum / (256 * 256 - fg);
    fractions.push(frac);
    assert.ok(frac >= 0.1 && frac <= 0.35, `tile ${t}: foreground ${frac}`);
    assert.ok(meanIn < meanOut - 40, `tile ${t}: nuclei ${meanIn} vs background ${meanOut}`);
    assert.ok(s.nuclei >= 15 && s.nuclei <= 255 && Math.max(...ids) <= s.nuclei && ids.size >= 0.9 * s.nuclei);
  }
  assert.ok(Math.max(...fractions) - Math.min(...fractions) > 0.08, `density should vary: ${fractions}`);
  assert.ok(touching > 0, "some nuclei touch or overlap");
});

Deno.test("synthetic: the cached dataset is written once, read back as generated, and redone when options change", async () => {
  await withTempDir(async (dir) => {
    const opts = { train: 3, test: 2, size: 64, seed: 4 };
    const first = await ensureSyntheticDataset(dir, opts);
    assert.equal(first.generated, true);
    assert.equal(first.train.images.length, 3);
    assert.equal(first.test.masks.length, 2);
    const all = [first.train, first.test].flatMap((s) => [...s.images, ...s.masks, ...s.instances]);
    const mtimes = await Promise.all(all.map(async (f) => (await Deno.stat(f)).mtime?.getTime()));

    const second = await ensureSyntheticDataset(dir, opts);
    assert.equal(second.generated, false);
    assert.deepEqual(await Promise.all(all.map(async (f) => (await Deno.stat(f)).mtime?.getTime())), mtimes);

    // Files hold exactly the generated tiles (test tiles continue the index after train).
    const tiles = generateSynthetic({ count: 5, size: 64, seed: 4 });
    const paths = [...first.train.images, ...first.test.images];
    for (const [i, p] of paths.entries()) assert.deepEqual(await readImage(p), tiles[i].image, p);
    const mask = await readImage(first.test.masks[1]);
    assert.deepEqual(mask, tiles[4].mask);
    assert.deepEqual((await readImage(first.test.instances[1])).data, Uint8Array.from(tiles[4].instances));
    assert.deepEqual(await listImages(`${dir}/train/images`), first.train.images);

    // New options: regenerated, and files of the old set that the new one lacks are gone.
    const third = await ensureSyntheticDataset(dir, { ...opts, train: 2, test: 1 });
    assert.equal(third.generated, true);
    assert.deepEqual(await listImages(`${dir}/test/images`), third.test.images);
    assert.equal((await listImages(dir)).length, 9);
    // A missing file invalidates the cache too.
    await Deno.remove(third.train.masks[0]);
    assert.equal((await ensureSyntheticDataset(dir, { ...opts, train: 2, test: 1 })).generated, true);
  });
});
