// A small declarative command-line parser: typed flags, defaults, generated --help, and errors
// that say what is allowed.
import { type Device, deviceCode } from "../device.ts";

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

export class UsageError extends Error {
  override name = "UsageError";
}

/** The flags every program shares. */
export const COMMON_FLAGS = {
  threads: {
    type: "int",
    help: "libtorch intra-op threads",
    default: Math.max(1, navigator.hardwareConcurrency ?? 1),
    min: 1,
  },
  device: { type: "string", help: "cpu, cuda or cuda:N", default: "cpu" },
} as const satisfies Spec;

/** Validates a --device value. */
export function deviceArg(value: string): Device {
  try {
    deviceCode(value as Device);
  } catch {
    throw new UsageError(`--device must be cpu, cuda or cuda:N; got ${JSON.stringify(value)}`);
  }
  return value as Device;
}

/** Runs a program's main: usage errors print one line and exit 2, anything else propagates. */
export async function runCli(program: string, main: (argv: string[]) => Promise<number>): Promise<never> {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${program}: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
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

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

function parseValue(flag: string, f: Flag, raw: string): unknown {
  const num = (s: string, int: boolean) => {
    const v = Number(s);
    if (s.trim() === "" || !Number.isFinite(v) || (int && !Number.isInteger(v))) {
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
      const near = [...byFlag.keys()].filter((k) => k.includes(name) || name.includes(k)).slice(0, 3);
      throw new UsageError(
        `unknown flag --${name}${
          near.length ? `; did you mean ${near.map((n) => "--" + n).join(", ")}?` : ""
        } (see --help)`,
      );
    }
    const f = spec[key];
    if (value === undefined) {
      if (f.type === "bool" && (i + 1 >= argv.length || argv[i + 1].startsWith("--"))) value = "true";
      else if (i + 1 < argv.length) value = argv[++i];
      else throw new UsageError(`--${name} needs a value`);
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
  ]
    .join("\n");
}
