// The captions of the pre-training pictures: the 5×7 font (every character distinct, widths,
// clipping) and the captioned layout (tiles where they belong and unchanged, every column and row
// labelled in the strip above or beside it and nowhere else, MDM and DDPM captions differing).
import assert from "node:assert/strict";
import type { Image } from "../src/data/image.ts";
import { drawText, FONT_CHARACTERS, glyph, GLYPH_HEIGHT, textWidth } from "../src/data/text.ts";
import { pictureLayout, reconstructionPicture } from "../src/mdm/pictures.ts";

const blank = (w: number, h: number): Image => ({
  width: w,
  height: h,
  channels: 3,
  data: new Uint8Array(w * h * 3).fill(255),
});
const ink = (img: Image, x: number, y: number) => img.data[(y * img.width + x) * 3] === 0;

Deno.test("font: 5×7 glyphs, all distinct; width 6n − 1; upper case as lower; unknown as ?; clipping", () => {
  const chars = [...FONT_CHARACTERS];
  for (const c of "0123456789abcdefghijklmnopqrstuvwxyz=:,.-+/()|?#") assert.ok(chars.includes(c), c);
  const keys = chars.map((c) => glyph(c).join(""));
  assert.equal(new Set(keys).size, keys.length, "two characters look alike");
  for (const c of chars) {
    assert.equal(glyph(c).length, 35);
    if (c !== " ") assert.ok(glyph(c).some((v) => v === 1), `${c} has ink`);
  }
  assert.deepEqual(glyph("A"), glyph("a"));
  assert.deepEqual(glyph("€"), glyph("?"));
  assert.equal(textWidth(""), 0);
  assert.equal(textWidth("t=250"), 29);
  // Drawn: ink exactly where the glyphs have it, one blank column between characters.
  const img = blank(20, 9);
  drawText(img, 1, 1, "t1");
  for (let y = 0; y < 9; y++) {
    for (let x = 0; x < 20; x++) {
      const k = x >= 1 && x < 6 ? 0 : x >= 7 && x < 12 ? 1 : -1;
      const want = k >= 0 && y >= 1 && y < 8 && glyph("t1"[k])[(y - 1) * 5 + (x - (k ? 7 : 1))] === 1;
      assert.equal(ink(img, x, y), want, `pixel ${x},${y}`);
    }
  }
  // Clipped to a box, and to the image (no wrap-around into the next row).
  const clipped = blank(8, 8);
  drawText(clipped, 5, 0, "88", [0, 0, 0], { x0: 0, y0: 0, x1: 7, y1: 3 });
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) if (x >= 7 || y >= 3) assert.ok(!ink(clipped, x, y), `${x},${y}`);
  }
  assert.ok(ink(clipped, 5, 0) || ink(clipped, 6, 0), "the visible part is drawn");
});

/** `rows` × `cols` tiles of side `s`, each a flat colour from its row and column. */
function tiles(rows: number, cols: number, s: number): Image[][] {
  return Array.from({ length: cols }, (_, c) =>
    Array.from({ length: rows }, (_, r) => {
      const img = blank(s, s);
      for (let p = 0; p < s * s; p++) img.data.set([40 + 20 * c, 100 + 30 * r, 200], p * 3);
      return img;
    }));
}

Deno.test("reconstructionPicture: tiles in place and unchanged; captions over every column and beside every row only", () => {
  const s = 64, rows = 3;
  const [orig, in1, out1, in2, out2] = tiles(rows, 5, s);
  const columns = [{ t: 250, inputs: in1, outputs: out1 }, { t: 999, inputs: in2, outputs: out2 }];
  const pic = reconstructionPicture(orig, columns, { method: "mdm", step: 1200 });
  const L = pictureLayout(rows, 5, s);
  assert.deepEqual([pic.width, pic.height], [L.width, L.height]);
  // 4 + 5 + 4 px of row labels, 5 tiles with 4 px gaps, 4 px; title, two caption lines, 3 rows.
  assert.equal(pic.width, 13 + 5 * 64 + 4 * 4 + 4);
  assert.equal(pic.height, 4 + 7 + 4 + 7 + 2 + 7 + 4 + 3 * 64 + 2 * 4 + 4);
  const inTile = new Uint8Array(pic.width * pic.height);
  [orig, in1, out1, in2, out2].forEach((col, c) =>
    col.forEach((tile, r) => {
      const [x0, y0] = L.tileAt(r, c);
      for (let y = 0; y < s; y++) {
        for (let x = 0; x < s; x++) {
          const at = ((y0 + y) * pic.width + x0 + x) * 3;
          assert.deepEqual([...pic.data.subarray(at, at + 3)], [...tile.data.subarray(0, 3)], `tile ${r},${c}`);
          inTile[(y0 + y) * pic.width + x0 + x] = 1;
        }
      }
    })
  );
  // Outside the tiles: white or black (text) only; text only in the header and the row-label strip.
  const [left, top] = L.tileAt(0, 0);
  for (let y = 0; y < pic.height; y++) {
    for (let x = 0; x < pic.width; x++) {
      if (inTile[y * pic.width + x]) continue;
      const v = pic.data[(y * pic.width + x) * 3];
      assert.ok(v === 0 || v === 255, `${x},${y}`);
      if (v === 0) assert.ok(y < top || x < left, `text at ${x},${y} over the tiles`);
    }
  }
  // Each caption as drawn alone at its place: "input" over column 0, "t=250" over the first pair,
  // "masked" and "output" over theirs; the title; the row numbers.
  const expectText = (x: number, y: number, text: string) => {
    const w = textWidth(text), alone = blank(w, GLYPH_HEIGHT);
    drawText(alone, 0, 0, text);
    for (let dy = 0; dy < GLYPH_HEIGHT; dy++) {
      for (let dx = 0; dx < w; dx++) {
        assert.equal(ink(pic, x + dx, y + dy), ink(alone, dx, dy), `"${text}" at ${x + dx},${y + dy}`);
      }
    }
  };
  const centre = (c: number, span: number, text: string) => {
    const [x] = L.tileAt(0, c);
    return x + Math.floor((span * s + (span - 1) * 4 - textWidth(text)) / 2);
  };
  expectText(4, L.titleY, "mdm step 1200");
  expectText(centre(0, 1, "input"), L.kindY, "input");
  expectText(centre(1, 2, "t=250"), L.timestepY, "t=250");
  expectText(centre(3, 2, "t=999"), L.timestepY, "t=999");
  for (const c of [1, 3]) expectText(centre(c, 1, "masked"), L.kindY, "masked");
  for (const c of [2, 4]) expectText(centre(c, 1, "output"), L.kindY, "output");
  for (let r = 0; r < rows; r++) expectText(4, L.tileAt(r, 0)[1] + Math.floor((s - GLYPH_HEIGHT) / 2), String(r + 1));

  // DDPM's corrupted columns say "noised"; nothing else changes.
  const ddpm = reconstructionPicture(orig, columns, { method: "ddpm", step: 1200 });
  const differs = (x0: number, x1: number, y0: number, y1: number) => {
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (ink(pic, x, y) !== ink(ddpm, x, y)) return true;
    return false;
  };
  const [c1] = L.tileAt(0, 1), [c2] = L.tileAt(0, 2);
  assert.ok(differs(c1, c1 + s, L.kindY, L.kindY + GLYPH_HEIGHT), "masked vs noised");
  assert.ok(!differs(c2, c2 + s, L.kindY, L.kindY + GLYPH_HEIGHT), "output is output");
  assert.ok(!differs(left, pic.width, top, pic.height), "the tiles are the same");
});

Deno.test("reconstructionPicture: narrow tiles get the short captions; mismatched tiles are refused", () => {
  const [orig, inp, out] = tiles(2, 3, 32);
  const pic = reconstructionPicture(orig, [{ t: 500, inputs: inp, outputs: out }], { method: "mdm", step: 3 });
  const L = pictureLayout(2, 3, 32);
  const text = (c: number) => {
    const [x] = L.tileAt(0, c);
    let cols = 0;
    for (let dx = -2; dx < 34; dx++) {
      for (let y = L.kindY; y < L.kindY + GLYPH_HEIGHT; y++) if (ink(pic, x + dx, y)) cols++;
    }
    return cols;
  };
  assert.ok(text(1) > 0 && text(2) > 0);
  // "mask" and "out" fit in 32 px (23 and 17 px wide); "masked" and "output" (35 px) would not.
  const alone = (word: string) => {
    const img = blank(textWidth(word), GLYPH_HEIGHT);
    drawText(img, 0, 0, word);
    return img.data.filter((v, i) => i % 3 === 0 && v === 0).length;
  };
  assert.equal(text(1), alone("mask"));
  assert.equal(text(2), alone("out"));
  assert.throws(
    () => reconstructionPicture(orig, [{ t: 1, inputs: [inp[0]], outputs: out }], { method: "mdm", step: 1 }),
    RangeError,
  );
  assert.throws(
    () => reconstructionPicture(orig, [{ t: 1, inputs: tiles(2, 1, 16)[0], outputs: out }], { method: "mdm", step: 1 }),
    RangeError,
  );
});
