// Progress display for long runs: a redrawn bar on a terminal, plain log lines otherwise (CI, files).
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
  readonly #o: Required<ProgressOptions>;
  readonly #start = performance.now();
  readonly #startDone: number;
  #lastDraw = 0;

  constructor(o: ProgressOptions, done = 0) {
    this.#o = {
      label: o.label ?? "",
      every: o.every ?? Math.max(1, Math.round(o.total / 20)),
      plain: o.plain ?? !Deno.stderr.isTerminal(),
      total: o.total,
    };
    this.#startDone = done;
  }

  /** Reports `done` of `total` steps with named figures (loss, images/s, ...). */
  update(done: number, fields: Record<string, string | number> = {}): void {
    const o = this.#o;
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = (done - this.#startDone) / Math.max(elapsed, 1e-9);
    const eta = rate > 0 ? (o.total - done) / rate : Infinity;
    const info = Object.entries(fields).map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`).join("  ");
    const last = done >= o.total;
    if (o.plain) {
      if (done % o.every === 0 || last) {
        console.error(
          `${o.label}${o.label ? " " : ""}${done}/${o.total}  ${info}  elapsed ${duration(elapsed)}  eta ${
            duration(eta)
          }`,
        );
      }
      return;
    }
    const now = performance.now();
    if (!last && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const width = 24, filled = Math.round(width * done / o.total);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const line = `\r${o.label} ${bar} ${done}/${o.total}  ${info}  eta ${duration(eta)}\x1b[K`;
    writeSync(2, line + (last ? "\n" : ""));
  }
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(4);
}
