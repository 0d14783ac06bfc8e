// Progress display for long runs: a redrawn bar on a terminal, plain log lines otherwise (CI, files).
import process from "node:process";
import { writeSync } from "node:fs";

export interface ProgressOptions {
  total: number;
  /** Label before the bar. */
  label?: string;
  /** Where plain lines go when not on a terminal: every this many steps (and the last). */
  every?: number;
  /** Force plain lines (also chosen automatically when stderr is not a terminal). */
  plain?: boolean;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

export class Progress {
  readonly #settings: Required<ProgressOptions>;
  readonly #start = performance.now();
  readonly #startDone: number;
  #lastDraw = 0;

  constructor(opts: ProgressOptions, done = 0) {
    this.#settings = {
      label: opts.label ?? "",
      every: opts.every ?? Math.max(1, Math.round(opts.total / 20)),
      plain: opts.plain ?? !process.stderr.isTTY,
      total: opts.total,
    };
    this.#startDone = done;
  }

  /** Reports `done` of `total` steps with named figures (loss, images/s, ...). */
  update(done: number, fields: Record<string, string | number> = {}): void {
    const settings = this.#settings;
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = (done - this.#startDone) / Math.max(elapsed, 1e-9);
    const eta = rate > 0 ? (settings.total - done) / rate : Infinity;
    const info = Object.entries(fields).map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`).join("  ");
    const last = done >= settings.total;
    if (settings.plain) {
      if (done % settings.every === 0 || last) {
        console.error(
          `${settings.label}${settings.label ? " " : ""}${done}/${settings.total}  ${info}  elapsed ${
            duration(elapsed)
          }  eta ${duration(eta)}`,
        );
      }
      return;
    }
    const now = performance.now();
    if (!last && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const width = 24, filled = Math.round(width * done / settings.total);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const line = `\r${settings.label} ${bar} ${done}/${settings.total}  ${info}  eta ${duration(eta)}\x1b[K`;
    writeSync(2, line + (last ? "\n" : ""));
  }
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(4);
}
