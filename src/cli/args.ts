// A small declarative command-line parser: typed flags, defaults, generated --help, and errors
// that say what is allowed; and the programs' error handling: every expected failure ends in one
// line naming its input and exit code 2 (the command line) or 1 (the data, files or run), anything
// else in a one-line "unexpected error" with the stack trace only under --verbose (exit 3).
import { availableParallelism } from "node:os";
import process from "node:process";
import { type Device, deviceCode } from "../device.ts";
import { cudaAvailable, cudaDeviceCount } from "../runtime.ts";
import { DEFAULT_LIMITS, LimitError, type Limits } from "../io/limits.ts";

export type FlagType = "int" | "float" | "string" | "bool" | "ints";

export interface Flag {
  type: FlagType;
  help: string;
  default?: unknown;
  /** Allowed values of a string flag. */
  choices?: readonly string[];
  /** Inclusive bounds of a numeric flag (or of each entry of an ints flag). */
  min?: number;
  max?: number;
}

export type Spec = Record<string, Flag>;

/** A command line that cannot work: the program prints the message and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * An expected failure that is not the command line's fault (a run that diverged, an output folder
 * in use): the program prints the message and exits with code 1.
 */
export class RunError extends Error {
  override name = "RunError";
}

/** The flags every program shares. */
export const COMMON_FLAGS = {
  threads: {
    type: "int",
    help: "libtorch intra-op threads",
    default: Math.max(1, availableParallelism()),
    min: 1,
    max: 1024,
  },
  device: { type: "string", help: "cpu, cuda or cuda:N", default: "cpu" },
  maxPixels: {
    type: "int",
    help: "largest image (width × height) the readers accept; raise it for larger slides",
    default: DEFAULT_LIMITS.maxPixels,
    min: 1,
    max: 2 ** 40,
  },
  limits: {
    type: "string",
    help: "other reader limits as name=value,...: maxBytes, maxDepth, maxEntries, maxIntegerDigits",
  },
  verbose: { type: "bool", help: "print the stack trace of an unexpected error", default: false },
} as const satisfies Spec;

/**
 * Validates a --device value, and that the device exists: a CUDA device on a machine (or a
 * libtorch) without CUDA is a usage error rather than a failure deep inside the first tensor.
 */
export function deviceArg(value: string): Device {
  try {
    deviceCode(value as Device);
  } catch {
    throw new UsageError(`--device must be cpu, cuda or cuda:N; got ${JSON.stringify(value)}`);
  }
  if (value.startsWith("cuda")) {
    if (!cudaAvailable()) throw new UsageError(`--device ${value}: CUDA is not available (this libtorch or machine)`);
    const index = value === "cuda" ? 0 : Number(value.slice(5));
    const count = cudaDeviceCount();
    if (index >= count) throw new UsageError(`--device ${value}: there are ${count} CUDA devices`);
  }
  return value as Device;
}

/**
 * The readers' limits from --max-pixels and --limits. Raising --max-pixels raises maxBytes with it
 * (8 bytes a pixel: 4 samples of 16 bits), so that a larger image is not refused by the next limit.
 */
export function limitsArg(a: { maxPixels: number; limits?: string }): Required<Limits> {
  const out: Required<Limits> = { ...DEFAULT_LIMITS, maxPixels: a.maxPixels };
  out.maxBytes = Math.max(out.maxBytes, a.maxPixels * 8);
  if (a.limits === undefined) return out;
  for (const part of a.limits.split(",")) {
    const [name, raw] = part.split("=", 2) as [string, string | undefined];
    const key = name.trim() as keyof Limits;
    if (!(key in DEFAULT_LIMITS) || key === "maxPixels") {
      const known = Object.keys(DEFAULT_LIMITS).filter((k) => k !== "maxPixels").join(", ");
      throw new UsageError(`--limits: unknown limit ${JSON.stringify(name)} (known: ${known}; see also --max-pixels)`);
    }
    const v = Number(raw);
    if (raw === undefined || raw.trim() === "" || !Number.isSafeInteger(v) || v < 1) {
      throw new UsageError(`--limits ${key} expects a positive integer, got ${JSON.stringify(raw ?? "")}`);
    }
    out[key] = v;
  }
  return out;
}

/** The flag that raises a reader limit. */
function limitFlag(limit: keyof Limits): string {
  return limit === "maxPixels" ? "--max-pixels <pixels>" : `--limits ${limit}=<value>`;
}

// Errors whose message already names what failed (a file, a flag, a folder): the user's to fix.
const DATA_ERRORS = [
  "RunError",
  "ImageError",
  "DatasetError",
  "AnnotationError",
  "NpyError",
  "CheckpointError",
  "StateDictError",
  "LockError",
  "LimitError",
  "DistributedError",
];

function chain(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let x = e; x !== undefined && x !== null && out.length < 16; x = (x as Error).cause) out.push(x);
  return out;
}

/** One line of at most `max` characters. */
function oneLine(s: string, max = 600): string {
  const line = s.replace(/\s*\n\s*/g, "; ").trim();
  return line.length > max ? line.slice(0, max - 3) + "..." : line;
}

/**
 * How a program reports an error: the exit code and the line to print. Usage errors exit 2; the
 * data, files and run errors above, and the file system's (Deno's or node:fs's; their messages name
 * the path), exit 1;
 * anything else is unexpected (exit 3).
 */
export function describeError(e: unknown): { code: 1 | 2 | 3; message: string } {
  if (e instanceof UsageError) return { code: 2, message: oneLine(e.message) };
  const err = e instanceof Error ? e : new Error(String(e));
  let message = err.message;
  const limit = chain(e).find((x) => x instanceof LimitError) as LimitError | undefined;
  if (limit) {
    // The readers say how a library caller raises a limit; a user of the programs does it with a flag.
    const hint = `raise it with ${limitFlag(limit.limit)}`;
    message = message.replace(`raise it with the ${limit.limit} option`, hint);
    if (!message.includes(hint)) message += ` (${hint})`;
  }
  // File errors (node:fs's carry a code such as ENOENT, EACCES, ENOTDIR; Deno's own are classes of
  // Deno.errors, where the runtime has them): their messages name the path.
  const code = (err as { code?: unknown }).code;
  const denoErrors = (globalThis as { Deno?: { errors?: Record<string, unknown> } }).Deno?.errors ?? {};
  const fsError = Object.values(denoErrors).some((cls) => typeof cls === "function" && err instanceof cls) ||
    (typeof code === "string" && /^E[A-Z0-9]+$/.test(code));
  if (DATA_ERRORS.includes(err.name) || fsError) return { code: 1, message: oneLine(message) };
  return { code: 3, message: `unexpected error: ${oneLine(`${err.name}: ${message}`)}` };
}

/**
 * Runs a program's main on `argv` and returns its exit code; an error is reported as one line on
 * `print` (default console.error), prefixed with the program's name, with the stack trace when
 * `argv` has --verbose (always for unexpected errors then, never otherwise).
 */
export async function runMain(
  program: string,
  main: (argv: string[]) => Promise<number>,
  argv: string[],
  print: (line: string) => void = console.error,
): Promise<number> {
  try {
    return await main(argv);
  } catch (e) {
    const { code, message } = describeError(e);
    const verbose = argv.includes("--verbose") || argv.includes("--verbose=true");
    print(`${program}: ${message}${code === 3 && !verbose ? " (rerun with --verbose for the stack trace)" : ""}`);
    if (verbose && e instanceof Error && e.stack) print(e.stack);
    return code;
  }
}

/** Runs a program's main on the process's arguments and exits with its code (see runMain). */
export async function runCli(program: string, main: (argv: string[]) => Promise<number>): Promise<never> {
  process.exit(await runMain(program, main, process.argv.slice(2)));
}

type ValueOf<F extends Flag> = F["type"] extends "int" | "float" ? number
  : F["type"] extends "bool" ? boolean
  : F["type"] extends "ints" ? number[]
  : string;

export type Parsed<S extends Spec> = {
  [K in keyof S]:
    | ValueOf<S[K]>
    | (S[K]["default"] extends undefined ? undefined : never);
};

/** `crop` -> `--crop`, `microBatch` -> `--micro-batch`. */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

function parseValue(flag: string, f: Flag, raw: string): unknown {
  const num = (s: string, int: boolean) => {
    const v = Number(s);
    // Safe integers only: 1e20 is an integer to JavaScript but no seed, count or size.
    if (s.trim() === "" || !Number.isFinite(v) || (int && !Number.isSafeInteger(v))) {
      throw new UsageError(`--${flag} expects ${int ? "an integer" : "a number"}, got ${JSON.stringify(s)}`);
    }
    if ((f.min !== undefined && v < f.min) || (f.max !== undefined && v > f.max)) {
      const range = f.max === undefined
        ? `at least ${f.min}`
        : f.min === undefined
        ? `at most ${f.max}`
        : `between ${f.min} and ${f.max}`;
      throw new UsageError(`--${flag} must be ${range}, got ${v}`);
    }
    return v;
  };
  switch (f.type) {
    case "int":
      return num(raw, true);
    case "float":
      return num(raw, false);
    case "ints":
      return raw.split(",").map((s) => num(s, true));
    case "bool":
      if (["true", "1", "yes", "on"].includes(raw)) return true;
      if (["false", "0", "no", "off"].includes(raw)) return false;
      throw new UsageError(`--${flag} expects true or false, got ${JSON.stringify(raw)}`);
    case "string":
      if (f.choices && !f.choices.includes(raw)) {
        throw new UsageError(`--${flag} must be one of ${f.choices.join(", ")}; got ${JSON.stringify(raw)}`);
      }
      if (raw === "") throw new UsageError(`--${flag} needs a value, got an empty string`);
      return raw;
  }
}

/** Parses `--name value`, `--name=value`, and bare `--flag` / `--no-flag` for booleans. */
export function parseArgs<S extends Spec>(spec: S, argv: readonly string[]): Parsed<S> & { help: boolean } {
  const byFlag = new Map(Object.keys(spec).map((k) => [kebab(k), k]));
  const out: Record<string, unknown> = { help: false };
  for (const [k, f] of Object.entries(spec)) out[k] = f.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      out.help = true;
      continue;
    }
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}; flags start with --`);
    let [name, value] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    let key = byFlag.get(name);
    if (
      !key && name.startsWith("no-") && spec[byFlag.get(name.slice(3)) ?? ""]?.type === "bool" && value === undefined
    ) {
      key = byFlag.get(name.slice(3))!;
      value = "false";
    }
    if (!key) {
      const near = name.length < 2
        ? []
        : [...byFlag.keys()].filter((k) => k.includes(name) || name.includes(k)).slice(0, 3);
      throw new UsageError(
        `unknown flag --${name}${
          near.length ? `; did you mean ${near.map((n) => "--" + n).join(", ")}?` : ""
        } (see --help)`,
      );
    }
    const f = spec[key];
    if (value === undefined) {
      if (f.type === "bool" && (i + 1 >= argv.length || argv[i + 1].startsWith("--"))) value = "true";
      else if (i + 1 < argv.length && !(argv[i + 1].startsWith("--") && byFlag.has(argv[i + 1].slice(2)))) {
        value = argv[++i];
      } else throw new UsageError(`--${name} needs a value`);
    }
    out[key] = parseValue(name, f, value);
  }
  return out as Parsed<S> & { help: boolean };
}

/** The --help text: usage line, then every flag with its type, default and choices. */
export function helpText<S extends Spec>(usage: string, spec: S): string {
  const rows = Object.entries(spec).map(([k, f]) => {
    const kind = f.choices ? f.choices.join("|") : f.type === "ints" ? "n,n,..." : f.type === "bool" ? "" : f.type;
    const left = `  --${kebab(k)}${kind ? ` <${kind}>` : ""}`;
    const def = f.default === undefined
      ? ""
      : ` (default: ${Array.isArray(f.default) ? f.default.join(",") : f.default})`;
    return [left, f.help + def] as const;
  });
  const w = Math.min(40, Math.max(...rows.map(([l]) => l.length)) + 2);
  return [
    usage,
    "",
    ...rows.map(([l, r]) => l.length >= w ? `${l}\n${" ".repeat(w)}${r}` : l.padEnd(w) + r),
    "  --help".padEnd(w) + "this text",
    "",
    "Exit codes: 0 done, 1 a data, file or run error, 2 a command-line error, 3 an unexpected error (--verbose",
    "prints its stack trace).",
  ]
    .join("\n");
}
