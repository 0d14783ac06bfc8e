// Labelled segmentation data: the NPY and BMP readers against files numpy and PIL wrote, the
// polygon fill against skimage.draw.polygon, the MoNuSeg loader on the real files (XML fills vs the
// shipped PNG masks, nucleus counts vs Python's xml.etree), the GlaS / ddpm-segmentation / folder /
// synthetic loaders on fixtures, resizing against PIL and torch, and every corrupt-input case
// (an error naming the file and the problem); image listings through symbolic links and past label
// folders, and the class count of folder datasets. Python oracles run through tests/helpers/torch_ref.ts.
import assert from "node:assert/strict";
import { decodeBmp } from "../src/data/bmp.ts";
import { type Image, ImageError, writePng } from "../src/data/image.ts";
import { decodeNpy, NpyError, npyToLabel, readNpy } from "../src/data/npy.ts";
import {
  AnnotationError,
  parseMoNuSegXml,
  polygonSpans,
  rasterizeRegions,
  readMoNuSegAnnotation,
  readMoNuSegXml,
  type Region,
} from "../src/data/polygons.ts";
import { Rng } from "../src/data/rng.ts";
import { DatasetError, SegSplit } from "../src/data/datasets/dataset.ts";
import { loadDdpmSeg } from "../src/data/datasets/ddpm_seg.ts";
import { compareNatural } from "../src/data/datasets/files.ts";
import { classesFromMasks, loadFolderDataset, loadFolderPair } from "../src/data/datasets/folder_pair.ts";
import { describeListing, findImages, listImages } from "../src/data/folder.ts";
import { loadGlaS } from "../src/data/datasets/glas.ts";
import { loadMoNuSeg } from "../src/data/datasets/monuseg.ts";
import { loadSynthetic } from "../src/data/datasets/synthetic_set.ts";
import { resizeImageBilinear, resizeLabelNearest } from "../src/data/resize.ts";
import { generateSynthetic } from "../src/data/synthetic.ts";
import { encodeBase64 } from "../src/util/base64.ts";
import { refTensor, type RefValue, torchRef } from "./helpers/torch_ref.ts";

const PYTHON = Deno.env.get("MDM_PYTHON") ?? "/usr/bin/python3";
const MONUSEG = Deno.env.get("MDM_MONUSEG") ?? new URL("../../shared/data/monuseg", import.meta.url).pathname;

function pythonHas(modules: string): boolean {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", `import ${modules}`], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
// The oracles need PIL (BMP/PNG/TIFF writing, resizing), numpy (.npy files) and skimage (polygon fill).
const HAVE_PY = pythonHas("torch, numpy, PIL, skimage");
const isDir = (p: string) => {
  try {
    return Deno.statSync(p).isDirectory;
  } catch {
    return false;
  }
};
const HAVE_MONUSEG = ["train/images", "train/masks", "train/annotations", "test/images", "test/annotations"]
  .every((d) => isDir(`${MONUSEG}/${d}`));
if (!HAVE_PY) console.log(`segsets_test: skipping Python-oracle tests: ${PYTHON} lacks torch, numpy, PIL or skimage`);
if (!HAVE_MONUSEG) console.log(`segsets_test: skipping real MoNuSeg tests: ${MONUSEG}/{train,test}/... not found`);

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mdm_segsets_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs Python snippets (statements assigning `result`) in one process of the oracle Python (PIL,
 * skimage, numpy: Debian's, whatever libtorch is under test); fails on any case error.
 */
async function py(cases: Record<string, string>): Promise<Record<string, RefValue>> {
  const out = await torchRef(Object.fromEntries(Object.entries(cases).map(([k, code]) => [k, { code }])), 1, {
    oracle: true,
  });
  for (const [k, v] of Object.entries(out)) {
    if (v !== null && typeof v === "object" && "error" in v) throw new Error(`python case ${k}: ${String(v.error)}`);
  }
  return out;
}
const q = (s: string) => JSON.stringify(s); // a Python string literal

const numbers = (v: RefValue | undefined) => Array.from(refTensor(v).data as ArrayLike<number | bigint>, Number);

/** Asserts that `fn` rejects with `cls` whose message names `path` and matches `problem`. */
async function assertFails(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => Error,
  path: string,
  problem: RegExp,
): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.ok(e.message.startsWith(`${path}: `), `message should start with ${path}: ${e.message}`);
    assert.match(e.message, problem);
    return true;
  });
}

function pattern(w: number, h: number, c: 1 | 3, salt = 0): Image {
  const data = new Uint8Array(w * h * c);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919 + salt * 104729 + (i >> 4)) % 256;
  return { width: w, height: h, channels: c, data };
}

// ---------------------------------------------------------------- NPY

const NPY_DTYPES = ["u1", "i1", "u2", "i2", "i4", "i8", "f4", "f8", "b1"];

Deno.test({
  name: "npy: arrays numpy saved (9 dtypes, 1.0 headers, a 2.0 header, 1-D/3-D/empty shapes) read back exactly",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (dir) => {
      // Values cover each type's extremes; numpy writes them and returns them as float64/int64
      // tensors for comparison (float64 holds every u1..i4 and f4 value exactly).
      const cases: Record<string, string> = {};
      for (const dt of NPY_DTYPES) {
        cases[dt] = `
a = np.arange(-60, 60, dtype=np.int64).reshape(8, 15) * 997
dt = np.dtype('${dt}')
if dt.kind in 'iu':
    info = np.iinfo(dt); a = np.clip(a, info.min, info.max); a[0, 0] = info.min; a[0, 1] = info.max
a = a.astype(dt)
if dt.kind == 'f': a = (a / 7).astype(dt)
np.save(${q(`${dir}/${dt}.npy`)}, a)
result = torch.from_numpy(a.astype(np.int64) if dt.kind in 'iub' else a.astype(np.float64))`;
      }
      cases.v2 = `
a = (np.arange(6 * 5 * 4, dtype=np.int32) - 50).reshape(6, 5, 4)
with open(${q(`${dir}/v2.npy`)}, 'wb') as f: np.lib.format.write_array(f, a, version=(2, 0))
result = torch.from_numpy(a.astype(np.int64))`;
      cases.shapes = `
np.save(${q(`${dir}/one.npy`)}, np.arange(7, dtype=np.uint16))
np.save(${q(`${dir}/empty.npy`)}, np.zeros((0, 3), dtype=np.int32))
result = 0`;
      const ref = await py(cases);
      for (const dt of NPY_DTYPES) {
        const arr = await readNpy(`${dir}/${dt}.npy`);
        assert.equal(arr.dtype, dt);
        assert.deepEqual(arr.shape, [8, 15]);
        assert.deepEqual(Array.from(arr.data as ArrayLike<number | bigint>, Number), numbers(ref[dt]), dt);
      }
      const v2bytes = await Deno.readFile(`${dir}/v2.npy`);
      assert.equal(v2bytes[6], 2, "fixture should really have a 2.0 header");
      const v2 = await readNpy(`${dir}/v2.npy`);
      assert.deepEqual(v2.shape, [6, 5, 4]);
      assert.deepEqual(Array.from(v2.data as Int32Array), numbers(ref.v2));
      const one = await readNpy(`${dir}/one.npy`);
      assert.deepEqual([one.shape, Array.from(one.data as Uint16Array)], [[7], [0, 1, 2, 3, 4, 5, 6]]);
      const empty = await readNpy(`${dir}/empty.npy`);
      assert.deepEqual([empty.shape, empty.data.length], [[0, 3], 0]);
    }),
});

// numpy pads headers so data starts on a 64-byte boundary; other writers need not, and the
// reader must not build misaligned typed arrays.
Deno.test("npy: a hand-built 1.0 file with an odd header length decodes (data copied to alignment)", () => {
  const header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), } \n"; // 61 bytes
  const bytes = new Uint8Array(10 + header.length + 24);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length, 0]);
  bytes.set(new TextEncoder().encode(header), 10);
  new DataView(bytes.buffer).setInt32(10 + header.length + 4, -123456, true);
  const arr = decodeNpy(bytes, "odd.npy");
  assert.equal((10 + header.length) % 4, 3, "data offset should be misaligned for int32");
  assert.deepEqual(Array.from(arr.data as Int32Array), [0, -123456, 0, 0, 0, 0]);
});

Deno.test({
  name: "npy: fortran order, big-endian, unsupported dtype, bad magic, truncated data: NpyErrors naming the file",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (dir) => {
      await py({
        w: `
a = np.arange(12, dtype=np.uint8).reshape(3, 4)
np.save(${q(`${dir}/fortran.npy`)}, np.asfortranarray(a))
np.save(${q(`${dir}/big.npy`)}, a.astype('>i4'))
np.save(${q(`${dir}/complex.npy`)}, a.astype(np.complex64))
np.save(${q(`${dir}/ok.npy`)}, a.astype(np.int16))
result = 0`,
      });
      await assertFails(() => readNpy(`${dir}/fortran.npy`), NpyError, `${dir}/fortran.npy`, /fortran_order/);
      await assertFails(() => readNpy(`${dir}/big.npy`), NpyError, `${dir}/big.npy`, /byte order.*'>i4'/);
      await assertFails(() => readNpy(`${dir}/complex.npy`), NpyError, `${dir}/complex.npy`, /unsupported dtype '<c8'/);
      const ok = await Deno.readFile(`${dir}/ok.npy`);
      await Deno.writeFile(`${dir}/cut.npy`, ok.subarray(0, ok.length - 3));
      await assertFails(() => readNpy(`${dir}/cut.npy`), NpyError, `${dir}/cut.npy`, /truncated data.*24 bytes/);
      await Deno.writeFile(`${dir}/png.npy`, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0, 0, 0, 0, 0]));
      await assertFails(() => readNpy(`${dir}/png.npy`), NpyError, `${dir}/png.npy`, /bad magic/);
      await assertFails(() => readNpy(`${dir}/absent.npy`), NpyError, `${dir}/absent.npy`, /cannot read/);
    }),
});

Deno.test("npyToLabel: integral values 0..255 pass; others, and non-2-D shapes, are errors with the position", () => {
  const lab = npyToLabel({ dtype: "f4", shape: [2, 2], data: Float32Array.from([0, 1, 255, 3]) }, "f.npy");
  assert.deepEqual([lab.width, lab.height, Array.from(lab.data)], [2, 2, [0, 1, 255, 3]]);
  const hw1 = npyToLabel({ dtype: "u1", shape: [1, 2, 1], data: Uint8Array.from([4, 5]) }, "c.npy");
  assert.deepEqual([hw1.width, hw1.height], [2, 1]);
  assert.throws(
    () => npyToLabel({ dtype: "i4", shape: [2, 3], data: Int32Array.from([0, 0, 0, 0, 256, 0]) }, "x.npy"),
    /^NpyError: x\.npy: class map value 256 at row 1, column 1 is not an integer in 0\.\.255/,
  );
  assert.throws(
    () => npyToLabel({ dtype: "i8", shape: [1, 2], data: BigInt64Array.from([0n, -1n]) }, "n.npy"),
    /n\.npy: class map value -1 at row 0, column 1/,
  );
  assert.throws(
    () => npyToLabel({ dtype: "f4", shape: [1, 1], data: Float32Array.from([0.5]) }, "h.npy"),
    /h\.npy: class map value 0\.5/,
  );
  assert.throws(
    () => npyToLabel({ dtype: "u1", shape: [4], data: new Uint8Array(4) }, "s.npy"),
    /s\.npy: expected a 2-D/,
  );
});

// ---------------------------------------------------------------- BMP

Deno.test({
  name: "bmp: PIL-written 8-bit palette/gray, 24-bit and 32-bit files decode exactly (odd widths pad rows)",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (dir) => {
      // Width 13 makes every format's rows need padding (13, 39 bytes -> 16, 40); the palette maps
      // index j to a colour unrelated to j, so indices and colours cannot be confused.
      const ref = await py({
        w: `
from PIL import Image
y, x = np.mgrid[0:7, 0:13]
idx = ((x * 37 + y * 11) % 256).astype(np.uint8)
p = Image.fromarray(idx, 'P'); p.putpalette([v for j in range(256) for v in ((j * 3) % 256, 255 - j, (j * 7 + 5) % 256)])
p.save(${q(`${dir}/p8.bmp`)})
Image.fromarray(idx, 'L').save(${q(`${dir}/l8.bmp`)})
rgb = np.stack([idx, (x * 19) % 256, (y * 41 + x) % 256], -1).astype(np.uint8)
Image.fromarray(rgb).save(${q(`${dir}/rgb24.bmp`)})
rgba = np.dstack([rgb, (255 - idx)]).astype(np.uint8)
Image.fromarray(rgba, 'RGBA').save(${q(`${dir}/rgba32.bmp`)})
result = {n: torch.from_numpy(np.asarray(Image.open(${q(dir)} + '/' + n + '.bmp').convert('RGB')).copy())
          for n in ['p8', 'l8', 'rgb24', 'rgba32']}
result['p8_idx'] = torch.from_numpy(np.asarray(Image.open(${q(`${dir}/p8.bmp`)})).copy())
result['l8_idx'] = torch.from_numpy(np.asarray(Image.open(${q(`${dir}/l8.bmp`)})).copy())`,
      });
      const r = ref.w as Record<string, RefValue>;
      for (const [name, bpp] of [["p8", 8], ["l8", 8], ["rgb24", 24], ["rgba32", 32]] as const) {
        const path = `${dir}/${name}.bmp`;
        const bytes = await Deno.readFile(path);
        assert.equal(new DataView(bytes.buffer).getUint16(28, true), bpp, `${name} should be a ${bpp}-bit BMP`);
        const img = decodeBmp(bytes, path);
        assert.deepEqual([img.width, img.height, img.channels], [13, 7, 3], name);
        assert.deepEqual(img.data, refTensor(r[name]).data, name);
        if (bpp === 8) {
          const raw = decodeBmp(bytes, path, { paletteIndices: true });
          assert.equal(raw.channels, 1);
          assert.deepEqual(raw.data, refTensor(r[`${name}_idx`]).data, `${name} raw indices`);
        }
      }
    }),
});

/** A hand-built 24-bit BMP, top-down when `topDown`. */
function bmp24(img: Image, topDown: boolean, compression = 0): Uint8Array {
  const stride = Math.ceil((img.width * 3) / 4) * 4, size = 54 + stride * img.height;
  const b = new Uint8Array(size), v = new DataView(b.buffer);
  b.set([0x42, 0x4d]);
  v.setUint32(2, size, true);
  v.setUint32(10, 54, true);
  v.setUint32(14, 40, true);
  v.setInt32(18, img.width, true);
  v.setInt32(22, topDown ? -img.height : img.height, true);
  v.setUint16(26, 1, true);
  v.setUint16(28, 24, true);
  v.setUint32(30, compression, true);
  for (let y = 0; y < img.height; y++) {
    const row = 54 + (topDown ? y : img.height - 1 - y) * stride;
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + x) * 3;
      b.set([img.data[s + 2], img.data[s + 1], img.data[s]], row + x * 3);
    }
  }
  return b;
}

Deno.test("bmp: top-down (negative height) and bottom-up files of the same pixels decode alike", () => {
  const img = pattern(5, 4, 3);
  for (const topDown of [false, true]) {
    const out = decodeBmp(bmp24(img, topDown), "x.bmp");
    assert.deepEqual([out.width, out.height, out.data], [5, 4, img.data], `topDown ${topDown}`);
  }
});

Deno.test("bmp: RLE and bitfield compression, truncated pixels, bad signature and 16-bit depth are ImageErrors", () => {
  const img = pattern(6, 3, 3);
  const fails = (bytes: Uint8Array, problem: RegExp) =>
    assert.throws(() => decodeBmp(bytes, "g/a.bmp"), (e: unknown) => {
      assert.ok(e instanceof ImageError);
      assert.match(e.message, /^g\/a\.bmp: BMP: /);
      assert.match(e.message, problem);
      return true;
    });
  fails(bmp24(img, false, 1), /unsupported compression BI_RLE8/);
  fails(bmp24(img, false, 3), /unsupported compression BI_BITFIELDS/);
  const whole = bmp24(img, false);
  fails(whole.subarray(0, whole.length - 1), /truncated pixel data: 60 bytes needed at offset 54, file has 113/);
  fails(whole.subarray(0, 20), /truncated header/);
  const sig = whole.slice();
  sig[0] = 0x50;
  fails(sig, /missing 'BM' signature/);
  const d16 = whole.slice();
  new DataView(d16.buffer).setUint16(28, 16, true);
  fails(d16, /unsupported bit depth 16/);
});

// ---------------------------------------------------------------- polygon fill

function fill(xs: number[], ys: number[], w: number, h: number): Uint8Array {
  const m = new Uint8Array(w * h);
  polygonSpans(xs, ys, w, h, (r, c0, c1) => m.fill(1, r * w + c0, r * w + c1 + 1));
  return m;
}

Deno.test({
  name:
    "polygons: the fill equals skimage.draw.polygon on 90 random polygons (edges through centres, self-crossing, clipped)",
  ignore: !HAVE_PY,
  fn: async () => {
    // Vertices on grids of 1, 1/2 and 1/4 px put many pixel centres exactly on edges and vertices,
    // where the closed-polygon convention decides; the coordinates are exact binary fractions, so
    // both implementations compute those cases exactly. Ranges reach past the 24x20 image.
    const W = 24, H = 20, rng = new Rng(7);
    const polys: { xs: number[]; ys: number[] }[] = [];
    for (let i = 0; i < 90; i++) {
      const grid = [1, 2, 4][i % 3], nv = 3 + rng.int(i < 45 ? 6 : 14);
      const pick = (lo: number, hi: number) => Math.round(rng.uniform(lo, hi) * grid) / grid;
      if (i % 2 === 0) { // a star around a centre: usually simple
        const cx = pick(-2, W + 1), cy = pick(-2, H + 1);
        const angles = Array.from({ length: nv }, () => rng.uniform(0, 2 * Math.PI)).sort((a, b) => a - b);
        const rads = angles.map(() => rng.uniform(1, 9));
        polys.push({
          xs: angles.map((a, k) => Math.round((cx + rads[k] * Math.cos(a)) * grid) / grid),
          ys: angles.map((a, k) => Math.round((cy + rads[k] * Math.sin(a)) * grid) / grid),
        });
      } else { // random vertices: self-intersecting, overlapping, even-odd matters
        polys.push({
          xs: Array.from({ length: nv }, () => pick(-4, W + 3)),
          ys: Array.from({ length: nv }, () => pick(-4, H + 3)),
        });
      }
    }
    const ref = await py({
      masks: `
from skimage.draw import polygon
polys = ${JSON.stringify(polys)}
out = np.zeros((len(polys), ${H}, ${W}), np.uint8)
for i, p in enumerate(polys):
    rr, cc = polygon(np.array(p['ys'], float), np.array(p['xs'], float), (${H}, ${W}))
    out[i, rr, cc] = 1
result = torch.from_numpy(out)`,
    });
    const all = refTensor(ref.masks).data as Uint8Array;
    // The one known disagreement: a centre on an edge the outline traverses twice (a zero-width
    // spike, e.g. A -> B -> A) is boundary here and so filled, while skimage's crossing-parity edge
    // test sees the two coincident edges cancel. Any other difference fails.
    const onEdges = (xs: number[], ys: number[], px: number, py: number) => {
      let edges = 0;
      for (let k = 0; k < xs.length; k++) {
        const x0 = xs[k], y0 = ys[k], x1 = xs[(k + 1) % xs.length], y1 = ys[(k + 1) % xs.length];
        if (px === x0 && py === y0) return -1; // a vertex: skimage handles those explicitly
        const onLine = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) === 0;
        if (
          onLine && px >= Math.min(x0, x1) && px <= Math.max(x0, x1) && py >= Math.min(y0, y1) && py <= Math.max(y0, y1)
        ) {
          edges++;
        }
      }
      return edges;
    };
    let boundaryHits = 0, spikePixels = 0;
    polys.forEach(({ xs, ys }, i) => {
      const mine = fill(xs, ys, W, H), theirs = all.subarray(i * W * H, (i + 1) * W * H);
      for (let k = 0; k < mine.length; k++) {
        if (mine[k] === theirs[k]) continue;
        const px = k % W, py = Math.floor(k / W);
        const ok = mine[k] === 1 && onEdges(xs, ys, px, py) >= 2;
        assert.ok(ok, `polygon ${i} (${JSON.stringify({ xs, ys })}) differs at pixel ${px}, ${py}`);
        spikePixels++;
      }
      boundaryHits += xs.filter((x, k) => Number.isInteger(x) && Number.isInteger(ys[k])).length;
    });
    console.log(`${spikePixels} pixels on doubled edges differ from skimage, all others equal`);
    assert.ok(boundaryHits > 50, "fixtures should put vertices on pixel centres");
  },
});

Deno.test("polygons: closed-polygon convention on a square; later regions overwrite earlier ones", () => {
  // Square with corners on pixel centres (1,1)-(3,3): its boundary centres count, so 3x3 pixels.
  const sq = fill([1, 3, 3, 1], [1, 1, 3, 3], 5, 5);
  assert.deepEqual(Array.from(sq), [
    ...[0, 0, 0, 0, 0],
    ...[0, 1, 1, 1, 0],
    ...[0, 1, 1, 1, 0],
    ...[0, 1, 1, 1, 0],
    ...[0, 0, 0, 0, 0],
  ]);
  // A square between centres covers none; a thin horizontal sliver along a row covers that row.
  assert.equal(fill([1.2, 1.8, 1.8, 1.2], [1.2, 1.2, 1.8, 1.8], 5, 5).reduce((a, b) => a + b), 0);
  assert.deepEqual(Array.from(fill([0.5, 3.5, 3.5, 0.5], [2, 2, 2, 2], 5, 3)).slice(10), [0, 1, 1, 1, 0]);

  const reg = (index: number, xs: number[], ys: number[]): Region => ({
    index,
    id: String(index + 10),
    xs: Float64Array.from(xs),
    ys: Float64Array.from(ys),
  });
  const regions = [
    reg(0, [0, 3, 3, 0], [0, 0, 3, 3]), // id 1
    reg(1, [5, 6], [5, 6]), // 2 vertices: skipped, takes no id
    reg(2, [2, 5, 5, 2], [2, 2, 5, 5]), // id 2, on top of id 1 at (2..3, 2..3)
    reg(3, [1.2, 1.8, 1.8], [1.2, 1.2, 1.8]), // id 3: covers no pixel centre
  ];
  const r = rasterizeRegions(regions, { width: 7, height: 7, name: "t.xml" });
  assert.equal(r.count, 3);
  assert.deepEqual(r.skipped, [{ index: 1, id: "11", vertices: 2 }]);
  assert.deepEqual(r.empty, [3]);
  const at = (x: number, y: number) => r.instances[y * 7 + x];
  assert.deepEqual([at(0, 0), at(1, 1), at(2, 2), at(3, 3), at(4, 4), at(5, 5), at(6, 6)], [1, 1, 2, 2, 2, 2, 0]);
  assert.deepEqual(Array.from(r.mask), Array.from(r.instances, (v) => (v > 0 ? 1 : 0)));
});

Deno.test("polygons: vertices within the tolerance are clipped to the image; beyond it, an error names file, region, vertex", () => {
  const reg: Region = { index: 4, id: "9", xs: Float64Array.from([-3, 2, 2]), ys: Float64Array.from([0, 0, 12.4]) };
  const r = rasterizeRegions([reg], { width: 4, height: 10, name: "a.xml" });
  assert.equal(r.instances[9 * 4 + 2], 1, "the in-image part is drawn");
  assert.throws(
    () => rasterizeRegions([reg], { width: 4, height: 10, name: "a.xml", tolerance: 2 }),
    (e: unknown) =>
      e instanceof AnnotationError &&
      /^a\.xml: region 4 \(Id 9\) vertex 0 at X=-3, Y=0 lies outside the 4x10 image by more than the 2-pixel tolerance$/
        .test(e.message),
  );
  const far: Region = { index: 0, id: "1", xs: Float64Array.from([1, 2, 1500]), ys: Float64Array.from([1, 1, 3]) };
  assert.throws(() => rasterizeRegions([far], { width: 1000, height: 1000, name: "b.xml" }), /vertex 2 at X=1500, Y=3/);
});

const XML_OK = `<?xml version="1.0"?>
<!-- ImageScope -->
<Annotations MicronsPerPixel="0.25">
  <Annotation Id="1"><Attributes/>
    <Regions>
      <RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region"/></RegionAttributeHeaders>
      <Region Id="3" Type="0" Text="a &gt; b">
        <Attributes/>
        <Vertices>
          <Vertex X="1" Y="1"/><Vertex X='3.5' Y="1" Z="0"/>
          <Vertex X="3.5" Y="+4e0"/>
        </Vertices>
      </Region>
      <Region Id="7"><Vertices><Vertex X="0" Y="0"/></Vertices></Region>
    </Regions>
  </Annotation>
  <Plots/>
</Annotations>
`;

Deno.test("polygons: the XML parser reads regions in order; malformed files are AnnotationErrors naming file and problem", () => {
  const regions = parseMoNuSegXml(XML_OK, "ok.xml");
  assert.deepEqual(regions.map((r) => [r.index, r.id, Array.from(r.xs), Array.from(r.ys)]), [
    [0, "3", [1, 3.5, 3.5], [1, 1, 4]],
    [1, "7", [0], [0]],
  ]);
  const bad: [string, RegExp][] = [
    [
      XML_OK.replace("</Vertices>\n      </Region>", "</Region>"),
      /malformed XML: <\/Region> closes <Vertices> \(line 12\)/,
    ],
    [XML_OK.replace("</Annotations>", ""), /malformed XML: unclosed <Annotations> at end of file/],
    [XML_OK.replace('X="1" Y="1"', 'X="1,5" Y="1"'), /region 0 \(Id 3\) vertex 0: X="1,5" is not a number \(line 10\)/],
    [XML_OK.replace('X="1" Y="1"', 'X="1"'), /region 0 \(Id 3\) vertex 0 has no Y attribute/],
    [XML_OK.replace('X="1" Y="1"', 'X="1" Y=1'), /malformed XML: invalid attributes in <Vertex>/],
    [XML_OK.replace("<Plots/>", '<Vertex X="1" Y="2"/>'), /malformed XML: <Vertex> outside a <Region>/],
    [XML_OK.replaceAll("Annotations", "Svg"), /not an ImageScope annotation: root element <Svg>/],
    [XML_OK.replace(/<\/?Regions>/g, ""), /no <Regions> element/],
    [XML_OK + "<More/>", /malformed XML: second root element <More>/],
    [XML_OK.slice(0, 400), /malformed XML: (unterminated tag|unclosed)/],
    ["", /no root element/],
  ];
  for (const [text, problem] of bad) {
    assert.throws(() => parseMoNuSegXml(text, "dir/bad.xml"), (e: unknown) => {
      assert.ok(e instanceof AnnotationError, `expected AnnotationError for ${problem}, got ${e}`);
      assert.ok(e.message.startsWith("dir/bad.xml: "), e.message);
      assert.match(e.message, problem);
      return true;
    });
  }
});

// ---------------------------------------------------------------- real MoNuSeg

const iou = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let i = 0, u = 0;
  for (let k = 0; k < a.length; k++) {
    const x = a[k] > 0, y = b[k] > 0;
    if (x && y) i++;
    if (x || y) u++;
  }
  return i / u;
};

Deno.test({
  name:
    "monuseg: 30 train (13 with XML) + 14 test, sorted; 1000x1000 RGB; masks {0,1}; test labels = union of instances",
  ignore: !HAVE_MONUSEG,
  fn: async () => {
    const ds = await loadMoNuSeg(MONUSEG);
    assert.deepEqual([ds.name, ds.classes, ds.train.length, ds.test.length], ["monuseg", 2, 30, 14]);
    for (const split of [ds.train, ds.test]) assert.deepEqual(split.names, [...split.names].sort());
    assert.equal(ds.train.items.filter((it) => it.files.annotation).length, 13);
    assert.deepEqual(ds.train.first(3).names, ds.train.names.slice(0, 3));
    assert.equal(ds.train.names[0], "TCGA-18-5592-01Z-00-DX1");

    const fractions: number[] = [];
    for await (const x of ds.train) {
      assert.deepEqual([x.image.width, x.image.height, x.image.channels, x.label.length], [1000, 1000, 3, 1e6], x.name);
      let fg = 0;
      for (const v of x.label) {
        if (v > 1) assert.fail(`${x.name}: label value ${v}`);
        fg += v;
      }
      fractions.push(fg / 1e6);
    }
    // README: foreground fraction 0.105 to 0.400, mean 0.224.
    assert.ok(Math.min(...fractions) > 0.1 && Math.max(...fractions) < 0.41, `fractions ${fractions}`);
    assert.ok(Math.abs(fractions.reduce((a, b) => a + b) / 30 - 0.224) < 0.005);

    for await (const x of ds.test) {
      assert.deepEqual([x.image.width, x.image.height, x.image.channels], [1000, 1000, 3], x.name);
      assert.ok(x.instances && x.instances.length === 1e6);
      for (let k = 0; k < 1e6; k++) {
        if (x.label[k] !== (x.instances[k] > 0 ? 1 : 0)) assert.fail(`${x.name}: label and instances differ at ${k}`);
      }
      assert.equal(x.warnings, undefined, "test XMLs have no degenerate regions");
    }
  },
});

Deno.test({
  name: "monuseg: the XML fills of the 13 annotated train images match their PNG masks at IoU >= 0.85",
  ignore: !HAVE_MONUSEG,
  fn: async () => {
    const ds = await loadMoNuSeg(MONUSEG);
    const lines: string[] = [];
    let warnings = 0;
    for (const it of ds.train.items.filter((it) => it.files.annotation)) {
      const x = await it.load();
      const v = iou(x.label, x.instances!);
      lines.push(`  ${x.name}  IoU ${v.toFixed(4)}`);
      assert.ok(v >= 0.85, `${x.name}: IoU ${v}`);
      warnings += x.warnings?.length ?? 0;
    }
    console.log(`XML fill vs PNG mask:\n${lines.join("\n")}`);
    assert.equal(lines.length, 13);
    assert.equal(warnings, 2, "the two 2-vertex regions of the train XMLs are reported");
  },
});

Deno.test({
  name:
    "monuseg: region counts of all 27 XMLs match xml.etree (6,697 test nuclei); fills match skimage's but for on-edge centres",
  ignore: !HAVE_MONUSEG || !HAVE_PY,
  fn: () =>
    withTempDir(async (dir) => {
      const xmls = [
        ...[...Deno.readDirSync(`${MONUSEG}/train/annotations`)].map((e) => `${MONUSEG}/train/annotations/${e.name}`),
        ...[...Deno.readDirSync(`${MONUSEG}/test/annotations`)].map((e) => `${MONUSEG}/test/annotations/${e.name}`),
      ].filter((p) => p.endsWith(".xml")).sort();
      assert.equal(xmls.length, 27);
      // Independent reference: ElementTree parse, skimage.draw.polygon fill (later regions on top),
      // instance maps saved as .npy (read back with our reader).
      const ref = await py({
        counts: `
import xml.etree.ElementTree as ET
from skimage.draw import polygon
rows = []
for i, src in enumerate(${JSON.stringify(xmls)}):
    regs = ET.parse(src).getroot().findall('.//Region')
    inst = np.zeros((1000, 1000), np.uint16); k = 0
    for g in regs:
        vs = g.findall('.//Vertex')
        if len(vs) < 3: continue
        k += 1
        rr, cc = polygon(np.array([float(v.get('Y')) for v in vs]), np.array([float(v.get('X')) for v in vs]), (1000, 1000))
        inst[rr, cc] = k
    np.save(${q(dir)} + '/%d.npy' % i, inst)
    rows.append([len(regs), k])
result = torch.tensor(rows)`,
      });
      const counts = numbers(ref.counts);
      // Distance from pixel centre (x, y) to the outline of `r`.
      const edgeDistance = (r: Region, x: number, y: number) => {
        let best = Infinity;
        for (let i = 0; i < r.xs.length; i++) {
          const j = (i + 1) % r.xs.length, x0 = r.xs[i], y0 = r.ys[i], dx = r.xs[j] - x0, dy = r.ys[j] - y0;
          const len = dx * dx + dy * dy;
          const t = len ? Math.max(0, Math.min(1, ((x - x0) * dx + (y - y0) * dy) / len)) : 0;
          best = Math.min(best, Math.hypot(x0 + t * dx - x, y0 + t * dy - y));
        }
        return best;
      };
      let testTotal = 0, totalDiff = 0;
      const lines: string[] = [];
      for (let i = 0; i < xmls.length; i++) {
        const regions = await readMoNuSegXml(xmls[i]);
        const ann = await readMoNuSegAnnotation(xmls[i], 1000, 1000);
        assert.equal(regions.length, counts[2 * i], `${xmls[i]}: Region elements`);
        assert.equal(ann.count, counts[2 * i + 1], `${xmls[i]}: regions with >= 3 vertices`);
        if (xmls[i].includes("/test/")) testTotal += ann.count;
        // Coordinates like 114.2 are not exact in binary, so a centre lying on an edge may come out
        // a hair inside or outside. Here such centres count as boundary (within 1e-9 px) and are
        // filled; skimage's cross-product test rounds them either way. So every differing pixel
        // must be one we fill while lying on the outline of the region we fill it with.
        const kept = regions.filter((r) => r.xs.length >= 3);
        const theirs = (await readNpy(`${dir}/${i}.npy`)).data as Uint16Array;
        let diff = 0;
        for (let k = 0; k < 1e6; k++) {
          const mine = ann.instances[k];
          if (mine === theirs[k]) continue;
          diff++;
          const x = k % 1000, y = Math.floor(k / 1000);
          assert.ok(
            mine > 0 && edgeDistance(kept[mine - 1], x, y) < 1e-9,
            `${xmls[i]}: pixel ${x}, ${y} is ${mine} here and ${
              theirs[k]
            } in skimage, and not on region ${mine}'s edge`,
          );
        }
        totalDiff += diff;
        lines.push(`  ${xmls[i].slice(MONUSEG.length + 1)}: ${regions.length} regions, ${diff} px differ from skimage`);
      }
      console.log(lines.join("\n"));
      console.log(`${totalDiff} differing pixels in all, each an on-edge centre filled here`);
      assert.equal(testTotal, 6697);
    }),
});

// ---------------------------------------------------------------- MoNuSeg loader errors

const SMALL_XML = (regions: string) =>
  `<Annotations><Annotation><Regions>${regions}</Regions></Annotation></Annotations>`;
const region = (id: number, pts: [number, number][]) =>
  `<Region Id="${id}"><Vertices>${pts.map(([x, y]) => `<Vertex X="${x}" Y="${y}"/>`).join("")}</Vertices></Region>`;

/** A 2+1-image MoNuSeg layout with PIL-written LZW TIFFs (24x20). */
async function monusegFixture(root: string): Promise<void> {
  for (const d of ["train/images", "train/masks", "train/annotations", "test/images", "test/annotations"]) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await py({
    w: `
from PIL import Image
y, x = np.mgrid[0:20, 0:24]
for i, p in enumerate(['train/images/a.tif', 'train/images/b.tif', 'test/images/c.tif']):
    Image.fromarray(np.stack([x * 10 + i, y * 12, (x + y) * 5], -1).astype(np.uint8)).save(${
      q(root)
    } + '/' + p, compression='tiff_lzw')
result = 0`,
  });
  const mask = new Uint8Array(24 * 20);
  mask.fill(1, 30, 60);
  for (const n of ["a", "b"]) {
    await writePng(`${root}/train/masks/${n}.png`, { width: 24, height: 20, channels: 1, data: mask });
  }
  await Deno.writeTextFile(`${root}/train/annotations/a.xml`, SMALL_XML(region(1, [[2, 2], [6, 2], [6, 5]])));
  await Deno.writeTextFile(
    `${root}/test/annotations/c.xml`,
    SMALL_XML(region(1, [[1, 1], [4, 1], [4, 4], [1, 4]]) + region(2, [[3, 3], [8, 3], [8, 6], [3, 6]])),
  );
}

Deno.test({
  name: "monuseg loader: a small layout loads; missing/corrupt/mismatched files are errors naming the file",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (root) => {
      await monusegFixture(root);
      const ds = await loadMoNuSeg(root);
      assert.deepEqual([ds.train.names, ds.test.names], [["a", "b"], ["c"]]);
      const a = await ds.train.load(0), b = await ds.train.load(1), c = await ds.test.load(0);
      assert.deepEqual([a.image.width, a.image.height, a.image.channels, a.image.data[3]], [24, 20, 3, 10]);
      assert.ok(a.instances && b.instances === undefined, "instances only where an XML exists");
      assert.equal(a.instances[3 * 24 + 5], 1); // inside the triangle (2,2)-(6,2)-(6,5)
      assert.equal(c.instances![2 * 24 + 2], 1);
      assert.equal(c.instances![3 * 24 + 4], 2, "the later square overwrites the overlap");
      assert.equal(c.label.reduce((s, v) => s + v, 0), 16 + 24 - 4);

      // Corrupt inputs, one at a time, each restored afterwards.
      const swap = async (path: string, bytes: Uint8Array | null, check: () => Promise<void>) => {
        const orig = await Deno.readFile(path);
        if (bytes) await Deno.writeFile(path, bytes);
        else await Deno.remove(path);
        try {
          await check();
        } finally {
          await Deno.writeFile(path, orig);
        }
      };
      const tif = `${root}/train/images/b.tif`,
        png = `${root}/train/masks/b.png`,
        xml = `${root}/test/annotations/c.xml`;
      const tifBytes = await Deno.readFile(tif), pngBytes = await Deno.readFile(png);
      await swap(
        tif,
        tifBytes.subarray(0, tifBytes.length / 2),
        () => assertFails(async () => (await loadMoNuSeg(root)).train.load(1), ImageError, tif, /truncated TIFF/),
      );
      await swap(
        png,
        pngBytes.subarray(0, pngBytes.length - 20),
        () => assertFails(async () => (await loadMoNuSeg(root)).train.load(1), ImageError, png, /PNG/),
      );
      await swap(png, null, () => assertFails(() => loadMoNuSeg(root), DatasetError, png, /missing mask for .*b\.tif/));
      await swap(
        xml,
        null,
        () => assertFails(() => loadMoNuSeg(root), DatasetError, xml, /missing annotation for .*c\.tif/),
      );
      const small = new Uint8Array(24 * 19);
      await writePng(`${root}/small.png`, { width: 24, height: 19, channels: 1, data: small });
      await swap(png, await Deno.readFile(`${root}/small.png`), () =>
        assertFails(
          async () => (await loadMoNuSeg(root)).train.load(1),
          DatasetError,
          png,
          /mask is 24x19 but its image .*b\.tif is 24x20/,
        ));
      const twos = new Uint8Array(24 * 20).fill(255, 0, 5);
      await writePng(`${root}/v.png`, { width: 24, height: 20, channels: 1, data: twos });
      await swap(png, await Deno.readFile(`${root}/v.png`), () =>
        assertFails(
          async () => (await loadMoNuSeg(root)).train.load(1),
          DatasetError,
          png,
          /mask value 255 at pixel 0, 0; expected 0 or 1/,
        ));
      const enc = (s: string) => new TextEncoder().encode(s);
      await swap(xml, enc(SMALL_XML(region(1, [[1, 1], [4, 1], [400, 4]]))), () =>
        assertFails(
          async () => (await loadMoNuSeg(root)).test.load(0),
          AnnotationError,
          xml,
          /region 0 \(Id 1\) vertex 2 at X=400, Y=4 lies outside the 24x20 image/,
        ));
      await swap(xml, enc(SMALL_XML(region(1, [[1, 1]])).replace("</Vertices>", "")), () =>
        assertFails(
          async () => (await loadMoNuSeg(root)).test.load(0),
          AnnotationError,
          xml,
          /malformed XML/,
        ));
    }),
});

// ---------------------------------------------------------------- GlaS

Deno.test({
  name: "glas loader: lexicographic (MDM's) or natural order; raw palette ids give label and instances; errors named",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (dir) => {
      const names = [...Array.from({ length: 12 }, (_, i) => `train_${i + 1}`), "testA_1", "testA_2", "testB_1"];
      // Images 24-bit, annotations 8-bit palette BMPs whose palette maps id j to an unrelated
      // colour (and id 0 to white), so reading colours instead of indices would show.
      const ref = await py({
        w: `
from PIL import Image
rng = np.random.default_rng(3)
out = {}
for i, n in enumerate(${JSON.stringify(names)}):
    h, w = 9 + i % 3, 14 + i % 4
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(${q(dir)} + '/' + n + '.bmp')
    ids = np.zeros((h, w), np.uint8); ids[1:4, 2:6] = 1 + i; ids[5:8, 7:12] = 2 + i * 3
    p = Image.fromarray(ids, 'P'); p.putpalette([255, 255, 255] + [v for j in range(1, 256) for v in ((j * 53) % 256, 17, 200)])
    p.save(${q(dir)} + '/' + n + '_anno.bmp')
    out[n] = [torch.from_numpy(np.asarray(Image.open(${q(dir)} + '/' + n + '.bmp').convert('RGB')).copy()),
              torch.from_numpy(np.asarray(Image.open(${q(dir)} + '/' + n + '_anno.bmp')).astype(np.int64))]
result = out`,
      });
      await Deno.writeTextFile(`${dir}/Grade.csv`, "name,grade\n");
      const ds = await loadGlaS(dir);
      assert.deepEqual(ds.train.names, [
        ..."1 10 11 12 2 3 4 5 6 7 8 9".split(" ").map((n) => `train_${n}`),
      ]);
      assert.deepEqual(ds.test.names, ["testA_1", "testA_2", "testB_1"]);
      assert.deepEqual(ds.extra!.testB.names, ["testB_1"]);
      assert.deepEqual(ds.train.first(3).names, ["train_1", "train_10", "train_11"]);
      const nat = await loadGlaS(dir, { order: "natural" });
      assert.deepEqual(nat.train.first(3).names, ["train_1", "train_2", "train_3"]);
      for (const split of [ds.train, ds.test]) {
        for (const x of await split.loadAll()) {
          const [rgb, ids] = (ref.w as Record<string, RefValue[]>)[x.name];
          assert.deepEqual(x.image.data, refTensor(rgb).data, x.name);
          const want = numbers(ids);
          assert.deepEqual(Array.from(x.instances!), want, x.name);
          assert.deepEqual(Array.from(x.label), want.map((v) => (v > 0 ? 1 : 0)), x.name);
        }
      }

      const anno = `${dir}/train_3_anno.bmp`, img = `${dir}/train_3.bmp`;
      const annoBytes = await Deno.readFile(anno), imgBytes = await Deno.readFile(img);
      const rle = annoBytes.slice();
      new DataView(rle.buffer).setUint32(30, 1, true);
      await Deno.writeFile(anno, rle);
      await assertFails(async () => (await loadGlaS(dir)).train.load(5), ImageError, anno, /BI_RLE8/);
      await Deno.writeFile(anno, annoBytes);
      await Deno.writeFile(img, imgBytes.subarray(0, 100));
      await assertFails(async () => (await loadGlaS(dir)).train.load(5), ImageError, img, /truncated pixel data/);
      await Deno.writeFile(img, await Deno.readFile(`${dir}/train_4.bmp`)); // 14+3 wide vs 14+2
      await assertFails(
        async () => (await loadGlaS(dir)).train.load(5),
        DatasetError,
        anno,
        /annotation is 16x11 but its image .*train_3\.bmp is 17x9/,
      );
      await Deno.remove(anno);
      await assertFails(() => loadGlaS(dir), DatasetError, anno, /missing annotation for .*train_3\.bmp/);
    }),
});

// ---------------------------------------------------------------- ddpm-segmentation

Deno.test({
  name: "ddpm-seg loader: sorted recursive pairs; labels from .npy, resized nearest like torch; images like PIL",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (root) => {
      // train: b (32x32 image, 32x32 label), a (32x32 image, 64x64 label), sub/z; test: one pair.
      const ref = await py({
        w: `
from PIL import Image
import os
rng = np.random.default_rng(5)
out = {}
for p, side, lside in [('train/b', 32, 32), ('train/a', 32, 64), ('train/sub/z', 32, 32), ('test/t', 20, 20)]:
    os.makedirs(os.path.dirname(${q(root)} + '/' + p), exist_ok=True)
    img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(img).save(${q(root)} + '/' + p + '.png')
    lab = rng.integers(0, 34, (lside, lside)).astype(np.int64 if p.endswith('a') else np.uint8)
    lab[0, :3] = 255
    np.save(${q(root)} + '/' + p + '.npy', lab)
    t = torch.from_numpy(lab.astype(np.float32))[None, None]
    out[p] = {'img': torch.from_numpy(img),
              'img16': torch.from_numpy(np.asarray(Image.fromarray(img).resize((16, 16), Image.BILINEAR)).copy()),
              'lab': F.interpolate(t, size=(side, side), mode='nearest')[0, 0].to(torch.uint8),
              'lab16': F.interpolate(t, size=(16, 16), mode='nearest')[0, 0].to(torch.uint8)}
result = out`,
      });
      const r = ref.w as Record<string, Record<string, RefValue>>;
      const train = await loadDdpmSeg(root, "train");
      assert.deepEqual(train.names, ["a", "b", "z"], "Python's sorted() over paths: a.png < b.png < sub/z.png");
      const keys = ["train/a", "train/b", "train/sub/z"];
      for (const [i, x] of (await train.loadAll()).entries()) {
        assert.deepEqual(x.image.data, refTensor(r[keys[i]].img).data, keys[i]);
        assert.deepEqual(x.label, refTensor(r[keys[i]].lab).data, `${keys[i]} label (a's is 64x64 on disk)`);
      }
      const small = await loadDdpmSeg(root, "train", { size: 16, classes: 34 });
      for (const [i, x] of (await small.loadAll()).entries()) {
        assert.deepEqual([x.image.width, x.image.height], [16, 16]);
        assert.deepEqual(x.image.data, refTensor(r[keys[i]].img16).data, `${keys[i]} resized image`);
        assert.deepEqual(x.label, refTensor(r[keys[i]].lab16).data, `${keys[i]} resized label`);
      }
      assert.deepEqual((await loadDdpmSeg(root, "test")).names, ["t"]);

      // Errors.
      await assertFails(
        async () => (await loadDdpmSeg(root, "train", { classes: 20 })).load(0),
        DatasetError,
        `${root}/train/a.npy`,
        /label value (2\d|3[0-3]) at pixel \d+, \d+ is not a class \(expected 0\.\.19 or 255\)/,
      );
      await py({
        f: `np.save(${
          q(`${root}/test/t.npy`)
        }, np.asfortranarray(np.zeros((20, 20), np.uint8) + np.eye(20, dtype=np.uint8)))
result = 0`,
      });
      await assertFails(
        async () => (await loadDdpmSeg(root, "test")).load(0),
        NpyError,
        `${root}/test/t.npy`,
        /fortran/,
      );
      await py({
        r: `np.save(${q(`${root}/test/t.npy`)}, np.zeros((10, 20), np.uint8))
result = 0`,
      });
      await assertFails(
        async () => (await loadDdpmSeg(root, "test")).load(0),
        DatasetError,
        `${root}/test/t.npy`,
        /class map is 20x10 but its image .*t\.png is square/,
      );
      await writePng(`${root}/test/t.png`, pattern(20, 12, 3));
      await assertFails(
        async () => (await loadDdpmSeg(root, "test")).load(0),
        DatasetError,
        `${root}/test/t.png`,
        /20x12; only square/,
      );
      await Deno.remove(`${root}/test/t.npy`);
      await assertFails(
        () => loadDdpmSeg(root, "test"),
        DatasetError,
        `${root}/test/t.npy`,
        /missing class map for .*t\.png/,
      );
      await assertFails(
        () => loadDdpmSeg(`${root}/nope`, "train"),
        DatasetError,
        `${root}/nope/train`,
        /folder not found/,
      );
    }),
});

Deno.test({
  name: "resize: labels nearest equal torch's mode='nearest'; images equal PIL's BILINEAR resize exactly",
  ignore: !HAVE_PY,
  fn: async () => {
    const sizes: [number, number, number, number][] = [
      [64, 64, 32, 32],
      [32, 32, 64, 64],
      [100, 37, 256, 64],
      [256, 64, 100, 37],
      [1000, 1000, 256, 256],
      [17, 5, 5, 17],
      [23, 29, 29, 23],
    ];
    const rng = new Rng(11);
    const labels = sizes.map(([w, h]) => Uint8Array.from({ length: w * h }, () => rng.int(256)));
    const imgs = sizes.map(([w, h], i) => pattern(w, h, 3, i));
    const cases: Record<string, string> = {};
    sizes.forEach(([w, h, ow, oh], i) => {
      cases[`l${i}`] = `
import base64
x = torch.from_numpy(np.frombuffer(base64.b64decode('${
        encodeBase64(labels[i])
      }'), np.uint8).astype(np.float32)).reshape(1, 1, ${h}, ${w})
result = F.interpolate(x, size=(${oh}, ${ow}), mode='nearest')[0, 0].to(torch.uint8)`;
      cases[`i${i}`] = `
from PIL import Image
import base64
a = np.frombuffer(base64.b64decode('${encodeBase64(imgs[i].data)}'), np.uint8).reshape(${h}, ${w}, 3)
result = torch.from_numpy(np.asarray(Image.fromarray(a).resize((${ow}, ${oh}), Image.BILINEAR)).copy())`;
    });
    const ref = await py(cases);
    sizes.forEach(([w, h, ow, oh], i) => {
      assert.deepEqual(resizeLabelNearest(labels[i], w, h, ow, oh), refTensor(ref[`l${i}`]).data, `label ${sizes[i]}`);
      const out = resizeImageBilinear(imgs[i], ow, oh);
      assert.deepEqual([out.width, out.height, out.channels], [ow, oh, 3]);
      assert.deepEqual(out.data, refTensor(ref[`i${i}`]).data, `image ${sizes[i]}`);
    });
  },
});

// ---------------------------------------------------------------- generic folders

Deno.test({
  name: "folder pairs: raw gray values, palette PNG indices; missing mask, size mismatch, truncated image named",
  ignore: !HAVE_PY,
  fn: () =>
    withTempDir(async (root) => {
      await Deno.mkdir(`${root}/images`);
      await Deno.mkdir(`${root}/masks`);
      const gray = Uint8Array.from({ length: 15 * 10 }, (_, i) => i % 4);
      await writePng(`${root}/images/a.png`, pattern(15, 10, 3, 1));
      await writePng(`${root}/images/b.png`, pattern(15, 10, 3, 2));
      await writePng(`${root}/masks/a.png`, { width: 15, height: 10, channels: 1, data: gray });
      const ref = await py({
        p: `
from PIL import Image
idx = (np.arange(150).reshape(10, 15) % 5).astype(np.uint8); idx[0, 0] = 255
p = Image.fromarray(idx, 'P'); p.putpalette([v for j in range(256) for v in (255 - j, j, 3)])
p.save(${q(`${root}/masks/b.png`)})
result = torch.from_numpy(np.asarray(Image.open(${q(`${root}/masks/b.png`)})).copy())`,
      });
      await Deno.writeTextFile(`${root}/masks/orphan.txt`, "not a mask");
      const split = await loadFolderPair(root, { classes: 5 });
      assert.deepEqual(split.names, ["a", "b"]);
      const [a, b] = await split.loadAll();
      assert.deepEqual(a.label, gray);
      assert.deepEqual(b.label, refTensor(ref.p).data, "palette indices, 255 kept as ignore");
      assert.deepEqual(a.image.data, pattern(15, 10, 3, 1).data);
      assert.equal(a.instances, undefined);

      await assertFails(
        async () => (await loadFolderPair(root, { classes: 3 })).load(0),
        DatasetError,
        `${root}/masks/a.png`,
        /mask value 3 at pixel 3, 0 is not a class \(expected 0\.\.2 or 255\)/,
      );
      await writePng(`${root}/masks/a.png`, { width: 10, height: 15, channels: 1, data: gray });
      await assertFails(
        async () => (await loadFolderPair(root)).load(0),
        DatasetError,
        `${root}/masks/a.png`,
        /mask is 10x15 but its image .*a\.png is 15x10/,
      );
      await writePng(`${root}/masks/a.png`, pattern(15, 10, 3));
      await assertFails(
        async () => (await loadFolderPair(root)).load(0),
        DatasetError,
        `${root}/masks/a.png`,
        /3 channels with colours/,
      );
      const bytes = await Deno.readFile(`${root}/images/b.png`);
      await Deno.writeFile(`${root}/images/b.png`, bytes.subarray(0, bytes.length - 30));
      await assertFails(async () => (await loadFolderPair(root)).load(1), ImageError, `${root}/images/b.png`, /PNG/);
      await writePng(`${root}/images/c.png`, pattern(4, 4, 3));
      await assertFails(
        () => loadFolderPair(root),
        DatasetError,
        `${root}/masks/c.png`,
        /missing mask for .*images\/c\.png/,
      );
    }),
});

// ---------------------------------------------------------------- synthetic

Deno.test("synthetic loader: images, masks and instances equal the generator's; a truncated file is named", async () => {
  await withTempDir(async (dir) => {
    const ds = await loadSynthetic(dir, { train: 3, test: 2, size: 64, seed: 4 });
    assert.deepEqual([ds.train.names, ds.test.names], [["syn_0000", "syn_0001", "syn_0002"], ["syn_0003", "syn_0004"]]);
    const gen = generateSynthetic({ count: 5, size: 64, seed: 4 });
    const all = [...(await ds.train.loadAll()), ...(await ds.test.loadAll())];
    all.forEach((x, i) => {
      assert.deepEqual(x.image.data, gen[i].image.data, x.name);
      assert.deepEqual(x.label, gen[i].mask.data, x.name);
      assert.deepEqual(Array.from(x.instances!), Array.from(gen[i].instances), x.name);
    });
    const path = ds.test.items[1].files.image;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, 200));
    await assertFails(() => ds.test.load(1), ImageError, path, /PNG/);
    const inst = ds.train.items[0].files.instances;
    await writePng(inst, { width: 64, height: 64, channels: 1, data: new Uint8Array(64 * 64) });
    await assertFails(() => ds.train.load(0), DatasetError, inst, /instance map and mask .* disagree/);
  });
});

// ---------------------------------------------------------------- small pieces

Deno.test("compareNatural and SegSplit: numbers by value; first(n), load range, async iteration", async () => {
  const names = ["train_10", "train_2", "train_1", "testA_3", "train_02", "a"];
  assert.deepEqual([...names].sort(compareNatural), ["a", "testA_3", "train_1", "train_02", "train_2", "train_10"]);
  const items = ["x", "y", "z"].map((name) => ({
    name,
    files: {},
    load: () => Promise.resolve({ name, image: pattern(1, 1, 3), label: new Uint8Array(1) }),
  }));
  const s = new SegSplit(items);
  assert.deepEqual([s.length, s.first(2).names, s.first(0).length], [3, ["x", "y"], 0]);
  assert.throws(() => s.first(4), RangeError);
  await assert.rejects(() => s.load(3), RangeError);
  const seen: string[] = [];
  for await (const x of s) seen.push(x.name);
  assert.deepEqual(seen, ["x", "y", "z"]);
});

// ---------------------------------------------------------------- links, label folders, class counts

Deno.test("findImages: links to files and folders are followed, broken links and cycles reported, label folders skipped", async () => {
  await withTempDir(async (dir) => {
    const store = `${dir}/store`, root = `${dir}/root`;
    for (const d of [store, `${store}/more`, `${root}/train/images`, `${root}/train/masks`, `${root}/Labels`]) {
      await Deno.mkdir(d, { recursive: true });
    }
    for (const [i, p] of ["a.png", "b.png", "more/c.png"].entries()) {
      await writePng(`${store}/${p}`, pattern(4, 4, 3, i));
    }
    await writePng(`${root}/train/images/own.png`, pattern(4, 4, 3, 9));
    await writePng(`${root}/train/masks/own.png`, pattern(4, 4, 1, 9));
    await writePng(`${root}/Labels/l.png`, pattern(4, 4, 1, 8));
    // Links: two to files, one to a folder, one to nothing, one back up the tree.
    await Deno.symlink(`${store}/a.png`, `${root}/train/images/link-a.png`);
    await Deno.symlink("../../../store/b.png", `${root}/train/images/link-b.png`);
    await Deno.symlink(`${store}/more`, `${root}/more`);
    await Deno.symlink(`${store}/gone.png`, `${root}/train/images/gone.png`);
    await Deno.symlink(root, `${root}/train/loop`);
    const found = await findImages(root);
    assert.deepEqual(found.paths, [
      `${root}/more/c.png`,
      `${root}/train/images/link-a.png`,
      `${root}/train/images/link-b.png`,
      `${root}/train/images/own.png`,
    ]);
    assert.deepEqual(found.skippedFolders, ["Labels", "train/masks"]);
    assert.deepEqual(found.skippedLinks, ["train/images/gone.png", "train/loop"]);
    assert.deepEqual(await listImages(root, { skipLabelFolders: true }), found.paths);
    assert.equal(describeListing(root, found.paths), "1 in more, 3 in train/images");
    // Label folders are images too when asked for, and for listImages by default.
    const all = await findImages(root, { skipLabelFolders: false });
    assert.deepEqual(await listImages(root), all.paths);
    assert.deepEqual(all.paths.filter((p) => /masks|Labels/.test(p)), [
      `${root}/Labels/l.png`,
      `${root}/train/masks/own.png`,
    ]);
    // A folder of links alone is a folder of images (it used to be read as empty).
    const links = `${dir}/links`;
    await Deno.mkdir(links);
    for (const n of ["a.png", "b.png"]) await Deno.symlink(`${store}/${n}`, `${links}/${n}`);
    assert.deepEqual(await listImages(links), [`${links}/a.png`, `${links}/b.png`]);
    // node:fs's codes, as every file error of the library carries them.
    await assert.rejects(() => findImages(`${store}/a.png`), (e: Error & { code?: string }) => e.code === "ENOTDIR");
    await assert.rejects(() => findImages(`${dir}/nowhere`), (e: Error & { code?: string }) => e.code === "ENOENT");
  });
});

Deno.test({
  name: "train.ts-style listing of the real MoNuSeg root: its 44 images, not the 30 masks",
  ignore: !HAVE_MONUSEG,
  fn: async () => {
    const found = await findImages(MONUSEG);
    assert.equal(found.paths.length, 44);
    assert.ok(found.paths.every((p) => /\/(train|test)\/images\/[^/]+\.tif$/.test(p)), "only images/ files");
    assert.deepEqual(found.skippedFolders, ["test/annotations", "train/annotations", "train/masks"]);
    assert.equal(describeListing(MONUSEG, found.paths), "14 in test/images, 30 in train/images");
  },
});

Deno.test("folder datasets: links to images and masks are followed; a broken link is an error naming it", async () => {
  await withTempDir(async (dir) => {
    const store = `${dir}/store`;
    await Deno.mkdir(store);
    for (const split of ["train", "test"]) {
      await Deno.mkdir(`${dir}/ds/${split}/images`, { recursive: true });
      await Deno.mkdir(`${dir}/ds/${split}/masks`, { recursive: true });
      for (const i of [0, 1]) {
        const name = `${split}${i}`;
        await writePng(`${store}/${name}.png`, pattern(6, 5, 3, i));
        await writePng(`${store}/${name}-mask.png`, {
          width: 6,
          height: 5,
          channels: 1,
          data: new Uint8Array(30).fill(i),
        });
        await Deno.symlink(`${store}/${name}.png`, `${dir}/ds/${split}/images/${name}.png`);
        await Deno.symlink(`${store}/${name}-mask.png`, `${dir}/ds/${split}/masks/${name}.png`);
      }
    }
    const split = await loadFolderPair(`${dir}/ds/train`);
    assert.deepEqual(split.names, ["train0", "train1"]);
    assert.deepEqual((await split.load(1)).label, new Uint8Array(30).fill(1));
    await Deno.symlink(`${store}/missing.png`, `${dir}/ds/train/images/train2.png`);
    await assertFails(
      () => loadFolderPair(`${dir}/ds/train`),
      DatasetError,
      `${dir}/ds/train/images/train2.png`,
      /a link to nothing/,
    );
  });
});

Deno.test("folder datasets: the class count is given, or the largest training mask value + 1 (255 ignored), and checked", async () => {
  await withTempDir(async (dir) => {
    const split = async (name: string, masks: number[][]) => {
      await Deno.mkdir(`${dir}/${name}/images`, { recursive: true });
      await Deno.mkdir(`${dir}/${name}/masks`, { recursive: true });
      for (const [i, values] of masks.entries()) {
        await writePng(`${dir}/${name}/images/m${i}.png`, pattern(4, 2, 3, i));
        await writePng(`${dir}/${name}/masks/m${i}.png`, {
          width: 4,
          height: 2,
          channels: 1,
          data: Uint8Array.from([...values, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8)),
        });
      }
    };
    // Training masks use 0, 1, 3 and 255 (ignore): 4 classes. A test mask holds 5.
    await split("ds/train", [[0, 1, 255], [3, 0]]);
    await split("ds/test", [[0, 1], [5]]);
    const ds = await loadFolderDataset(`${dir}/ds`);
    assert.equal(ds.classes, 4);
    assert.equal(ds.name, `${dir}/ds`);
    assert.equal(await classesFromMasks(ds.train), 4);
    assert.deepEqual([...(await ds.train.load(0)).label], [0, 1, 255, 0, 0, 0, 0, 0]);
    await assertFails(
      () => ds.test.load(1),
      DatasetError,
      `${dir}/ds/test/masks/m1.png`,
      /mask value 5 at pixel 0, 0 is not a class \(expected 0\.\.3 or 255\)/,
    );
    // Given: 6 classes, the test mask's 5 is one of them.
    const six = await loadFolderDataset(`${dir}/ds`, { classes: 6 });
    assert.equal(six.classes, 6);
    assert.equal((await six.test.load(1)).label[0], 5);
    // Given too few: the first training mask over it is an error when loaded.
    const two = await loadFolderDataset(`${dir}/ds`, { classes: 2 });
    await assertFails(
      () => two.train.load(1),
      DatasetError,
      `${dir}/ds/train/masks/m1.png`,
      /mask value 3 at pixel 0, 0 is not a class/,
    );
    // Masks of background alone have nothing to segment.
    await split("bg/train", [[0], [0, 255]]);
    await split("bg/test", [[0]]);
    await assertFails(
      () => loadFolderDataset(`${dir}/bg`),
      DatasetError,
      `${dir}/bg/train/masks/m0.png`,
      /hold no class but 0/,
    );
  });
});
