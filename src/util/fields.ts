// Checking values read from JSON files (saved training states, configs) field by field: each check
// returns the value with its type or throws a FieldError naming the field's path ("options.lr")
// and what was found, so that a hand-edited or damaged file fails with a message a user can act on.

/** A field of a JSON document that is missing or holds a value its reader cannot use. */
export class FieldError extends RangeError {
  override name = "FieldError";
  constructor(readonly field: string, readonly problem: string) {
    super(`${field} ${problem}`);
  }
}

/** A short rendering of a found value. */
function found(v: unknown): string {
  if (v === undefined) return "nothing";
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = `<${typeof v}>`;
  }
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

function need(v: unknown, field: string): void {
  if (v === undefined) throw new FieldError(field, "is missing");
}

/** A plain JSON object. */
export function object(v: unknown, field: string): Record<string, unknown> {
  need(v, field);
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new FieldError(field, `must be an object, got ${found(v)}`);
  }
  return v as Record<string, unknown>;
}

/** Throws for a key of `obj` outside `known` (a misspelt or foreign field must not pass unnoticed). */
export function onlyKeys(obj: Record<string, unknown>, known: readonly string[], field: string): void {
  const extra = Object.keys(obj).filter((k) => !known.includes(k));
  if (extra.length) throw new FieldError(`${field}.${extra[0]}`, `is not a known field (known: ${known.join(", ")})`);
}

/** An integer in [min, max]. */
export function integer(v: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  need(v, field);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new FieldError(field, `must be an integer from ${min} to ${max}, got ${found(v)}`);
  }
  return v;
}

/** A finite number in [min, max]. */
export function number(v: unknown, field: string, min: number, max = Number.MAX_VALUE): number {
  need(v, field);
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    throw new FieldError(field, `must be a number from ${min} to ${max}, got ${found(v)}`);
  }
  return v;
}

export function boolean(v: unknown, field: string): boolean {
  need(v, field);
  if (typeof v !== "boolean") throw new FieldError(field, `must be true or false, got ${found(v)}`);
  return v;
}

export function string(v: unknown, field: string): string {
  need(v, field);
  if (typeof v !== "string") throw new FieldError(field, `must be a string, got ${found(v)}`);
  return v;
}

/** One of `choices`. */
export function oneOf<const C extends string>(v: unknown, field: string, choices: readonly C[]): C {
  need(v, field);
  if (typeof v !== "string" || !choices.includes(v as C)) {
    throw new FieldError(field, `must be one of ${choices.join(", ")}; got ${found(v)}`);
  }
  return v as C;
}

/** A non-empty array of at most `maxLength` entries, each checked by `entry`. */
export function array<T>(
  v: unknown,
  field: string,
  entry: (x: unknown, field: string) => T,
  maxLength = 64,
): T[] {
  need(v, field);
  if (!Array.isArray(v) || v.length === 0 || v.length > maxLength) {
    throw new FieldError(field, `must be a list of 1 to ${maxLength} entries, got ${found(v)}`);
  }
  return v.map((x, i) => entry(x, `${field}[${i}]`));
}
