// Early stopping on a monitored value that should fall (a loss): the paper's heads stop once the
// epoch loss has not improved for `patience` epochs after a minimum number; the supervised UNet
// uses the same rule on its own checks (training loss over a window of steps, or held-out loss).

export interface PlateauOptions {
  /** Checks without a new best after which training stops. */
  patience: number;
  /** Checks before stopping is allowed (default 0). */
  minChecks?: number;
  /** A new best must be below the old one by more than this (default 0: any decrease counts). */
  minDelta?: number;
}

/** Tracks the best value of a falling quantity and says when it has stopped improving. */
export class Plateau {
  readonly patience: number;
  readonly minChecks: number;
  readonly minDelta: number;
  best = Infinity;
  /** The check (1-based) that gave `best`; 0 before the first. */
  bestCheck = 0;
  checks = 0;

  /** @throws RangeError for a patience below 1, or a negative minChecks or minDelta. */
  constructor(opts: PlateauOptions) {
    if (!(Number.isInteger(opts.patience) && opts.patience >= 1)) {
      throw new RangeError(`Plateau: patience must be an integer ≥ 1, got ${opts.patience}`);
    }
    this.patience = opts.patience;
    this.minChecks = opts.minChecks ?? 0;
    this.minDelta = opts.minDelta ?? 0;
    if (!(Number.isInteger(this.minChecks) && this.minChecks >= 0)) {
      throw new RangeError(`Plateau: minChecks must be an integer ≥ 0, got ${opts.minChecks}`);
    }
    if (!(this.minDelta >= 0)) throw new RangeError(`Plateau: minDelta must be ≥ 0, got ${opts.minDelta}`);
  }

  /**
   * Records one check's value; returns whether it is a new best. A NaN never improves (so a
   * diverged run stops after `patience` checks instead of looking converged).
   */
  update(value: number): boolean {
    this.checks++;
    if (value < this.best - this.minDelta) {
      this.best = value;
      this.bestCheck = this.checks;
      return true;
    }
    return false;
  }

  /** True once at least `minChecks` checks were made and the last `patience` brought no new best. */
  get stop(): boolean {
    return this.checks >= this.minChecks && this.checks - this.bestCheck >= this.patience;
  }
}
