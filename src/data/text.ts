// Small text drawn into 8-bit images, for captions of the pictures the programs write: a 5×7
// pixel font (lower-case letters, digits and a little punctuation; upper case is drawn as lower),
// one pixel between characters, no anti-aliasing.
import type { Image } from "./pixels.ts";

/** Glyph height and width in pixels, and the advance from one character to the next. */
export const GLYPH_HEIGHT = 7;
export const GLYPH_WIDTH = 5;
export const GLYPH_ADVANCE = GLYPH_WIDTH + 1;

// Each glyph: 7 rows of 5 columns, "#" for ink.
const GLYPHS: Record<string, string> = {
  " ": ".....,.....,.....,.....,.....,.....,.....",
  "0": ".###.,#...#,#..##,#.#.#,##..#,#...#,.###.",
  "1": "..#..,.##..,..#..,..#..,..#..,..#..,.###.",
  "2": ".###.,#...#,....#,...#.,..#..,.#...,#####",
  "3": "####.,....#,....#,.###.,....#,....#,####.",
  "4": "...#.,..##.,.#.#.,#..#.,#####,...#.,...#.",
  "5": "#####,#....,####.,....#,....#,#...#,.###.",
  "6": "..##.,.#...,#....,####.,#...#,#...#,.###.",
  "7": "#####,....#,...#.,..#..,.#...,.#...,.#...",
  "8": ".###.,#...#,#...#,.###.,#...#,#...#,.###.",
  "9": ".###.,#...#,#...#,.####,....#,...#.,.##..",
  "a": ".....,.....,.###.,....#,.####,#...#,.####",
  "b": "#....,#....,####.,#...#,#...#,#...#,####.",
  "c": ".....,.....,.###.,#....,#....,#...#,.###.",
  "d": "....#,....#,.####,#...#,#...#,#...#,.####",
  "e": ".....,.....,.###.,#...#,#####,#....,.###.",
  "f": "..##.,.#..#,.#...,###..,.#...,.#...,.#...",
  "g": ".....,.####,#...#,#...#,.####,....#,.###.",
  "h": "#....,#....,#.##.,##..#,#...#,#...#,#...#",
  "i": "..#..,.....,.##..,..#..,..#..,..#..,.###.",
  "j": "...#.,.....,..##.,...#.,...#.,#..#.,.##..",
  "k": "#....,#....,#..#.,#.#..,##...,#.#..,#..#.",
  "l": ".##..,..#..,..#..,..#..,..#..,..#..,.###.",
  "m": ".....,.....,##.#.,#.#.#,#.#.#,#...#,#...#",
  "n": ".....,.....,#.##.,##..#,#...#,#...#,#...#",
  "o": ".....,.....,.###.,#...#,#...#,#...#,.###.",
  "p": ".....,####.,#...#,#...#,####.,#....,#....",
  "q": ".....,.####,#...#,#...#,.####,....#,....#",
  "r": ".....,.....,#.##.,##..#,#....,#....,#....",
  "s": ".....,.....,.####,#....,.###.,....#,####.",
  "t": ".#...,.#...,###..,.#...,.#...,.#..#,..##.",
  "u": ".....,.....,#...#,#...#,#...#,#..##,.##.#",
  "v": ".....,.....,#...#,#...#,#...#,.#.#.,..#..",
  "w": ".....,.....,#...#,#...#,#.#.#,#.#.#,.#.#.",
  "x": ".....,.....,#...#,.#.#.,..#..,.#.#.,#...#",
  "y": ".....,.....,#...#,#...#,.####,....#,.###.",
  "z": ".....,.....,#####,...#.,..#..,.#...,#####",
  "=": ".....,.....,#####,.....,#####,.....,.....",
  "#": ".#.#.,.#.#.,#####,.#.#.,#####,.#.#.,.#.#.",
  ":": ".....,.##..,.##..,.....,.##..,.##..,.....",
  ",": ".....,.....,.....,.....,.##..,..#..,.#...",
  ".": ".....,.....,.....,.....,.....,.##..,.##..",
  "-": ".....,.....,.....,#####,.....,.....,.....",
  "+": ".....,..#..,..#..,#####,..#..,..#..,.....",
  "/": ".....,....#,...#.,..#..,.#...,#....,.....",
  "(": "...#.,..#..,.#...,.#...,.#...,..#..,...#.",
  ")": ".#...,..#..,...#.,...#.,...#.,..#..,.#...",
  "|": "..#..,..#..,..#..,..#..,..#..,..#..,..#..",
  "?": ".###.,#...#,....#,...#.,..#..,.....,..#..",
};

const BITMAPS = new Map<string, Uint8Array>(
  Object.entries(GLYPHS).map((
    [c, rows],
  ) => [c, Uint8Array.from(rows.replaceAll(",", ""), (ch) => (ch === "#" ? 1 : 0))]),
);

/** The characters the font draws (upper-case letters are drawn as lower-case ones). */
export const FONT_CHARACTERS: string = [...BITMAPS.keys()].join("");

/** A character's 5×7 bitmap (row-major, 1 = ink); "?" for a character the font lacks. */
export function glyph(c: string): Uint8Array {
  return BITMAPS.get(c.toLowerCase()) ?? BITMAPS.get("?")!;
}

/** Width in pixels of `text` drawn with drawText. */
export function textWidth(text: string): number {
  return text.length === 0 ? 0 : text.length * GLYPH_ADVANCE - 1;
}

/**
 * Draws `text` into an RGB (or gray) image with its top-left corner at (x, y), in `color`; pixels
 * outside the image, or outside the `clip` box [x0, x1) × [y0, y1) when given, are left alone.
 */
export function drawText(
  image: Image,
  x: number,
  y: number,
  text: string,
  color: readonly number[] = [0, 0, 0],
  clip?: { x0: number; y0: number; x1: number; y1: number },
): void {
  const { width, height, channels, data } = image;
  const x0 = Math.max(0, clip?.x0 ?? 0), y0 = Math.max(0, clip?.y0 ?? 0);
  const x1 = Math.min(width, clip?.x1 ?? width), y1 = Math.min(height, clip?.y1 ?? height);
  [...text].forEach((c, k) => {
    const g = glyph(c), left = x + k * GLYPH_ADVANCE;
    for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
      const py = y + gy;
      if (py < y0 || py >= y1) continue;
      for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
        const px = left + gx;
        if (!g[gy * GLYPH_WIDTH + gx] || px < x0 || px >= x1) continue;
        for (let ch = 0; ch < channels; ch++) {
          data[(py * width + px) * channels + ch] = color[Math.min(ch, color.length - 1)];
        }
      }
    }
  });
}
