// The fuzzer's child process: reads case seeds from stdin, one per line, and for each prints
// "start <seed>" before decoding it and "done <seed> <format> <accepted|rejected>" after, or
// "done <seed> <format> FAIL <why>" when the decoder broke a rule (and at the end, "peak <bytes>",
// how far its peak memory rose above start-up):
//   - it threw something other than its format's error class naming the file (or that class
//     caused by an engine error: a TypeError, a stack overflow, an allocation failure);
//   - it accepted a file cut short (or a damaged file of a checksummed format: PNG, .pt) with a
//     result that differs from the intact file's (a silent wrong result);
//   - it accepted a file with a result over the limits it was given, or the process's peak memory
//     rose past MEMORY_BOUND above what it was after start-up.
// A crash or a hang is seen by the parent (tests/fuzz_test.ts), which knows the seed in flight.
//
// Reproduce one case: deno run -A tests/helpers/fuzz_worker.ts --seed N [--out file]
import { createHash } from "node:crypto";
import { decodeBmp } from "../../src/data/bmp.ts";
import { decodeImage, ImageError } from "../../src/data/image.ts";
import { decodeNpy, NpyError, npyToLabel } from "../../src/data/npy.ts";
import { DecodeProblem } from "../../src/data/pixels.ts";
import { AnnotationError, parseMoNuSegXml, rasterizeRegions } from "../../src/data/polygons.ts";
import { CheckpointError, type LoadedTensors } from "../../src/io/common.ts";
import { LimitError, type Limits } from "../../src/io/limits.ts";
import { loadPt } from "../../src/io/pt.ts";
import { rawBytes } from "../../src/io/raw.ts";
import { loadSafetensors } from "../../src/io/safetensors.ts";
import { type Case, corpus, fileOf, type Format, makeCase, type SeedFile } from "./fuzz_cases.ts";

/** Limits small enough that an accepted file's cost is visibly bounded. */
export const FUZZ_LIMITS: Required<Limits> = {
  maxPixels: 1 << 20,
  maxBytes: 1 << 24,
  maxDepth: 100,
  maxEntries: 100_000,
  maxIntegerDigits: 4300,
};
/** How far the process's peak resident memory may rise above its start-up level (bytes). */
export const MEMORY_BOUND = 256 * 2 ** 20;
/** Formats whose files carry checksums over all the bytes a decoder uses. */
const CHECKSUMMED = new Set<Format>(["png", "pt"]);
const XML_SIZE = 64;

const tmp = Deno.makeTempDirSync({ prefix: "mdm_fuzz_" });

/** What an accepted file decoded to: a digest, and its size in bytes (checked against the limits). */
interface Decoded {
  digest: string;
  problem?: string;
}

function sha(parts: (string | Uint8Array)[]): string {
  const h = createHash("sha1");
  for (const p of parts) h.update(typeof p === "string" ? `${p}\u0000` : p);
  return h.digest("hex");
}

function checkpointDigest(t: LoadedTensors, fileSize: number): Decoded {
  const parts: (string | Uint8Array)[] = [];
  let bytes = 0;
  for (const [name, x] of t) {
    const raw = rawBytes(x);
    bytes += raw.length;
    parts.push(name, x.dtype, x.shape.join(","), raw);
  }
  for (const s of t.skipped) parts.push(s.name, s.reason);
  parts.push(JSON.stringify(t.metadata));
  const over = bytes > fileSize + FUZZ_LIMITS.maxBytes;
  return { digest: sha(parts), problem: over ? `tensors of ${bytes} bytes from a ${fileSize}-byte file` : undefined };
}

/** Decodes `bytes` as `format` with FUZZ_LIMITS; throws what the decoder throws. */
function decode(format: Format, bytes: Uint8Array, name: string): Decoded {
  switch (format) {
    case "png":
    case "tiff":
    case "bmp": {
      const img = format === "bmp" ? decodeBmp(bytes, name, FUZZ_LIMITS) : decodeImage(bytes, name, FUZZ_LIMITS);
      const n = img.width * img.height;
      const problem = n > FUZZ_LIMITS.maxPixels || img.data.length !== n * img.channels
        ? `an image of ${img.width}x${img.height}x${img.channels} with ${img.data.length} bytes`
        : undefined;
      return { digest: sha([`${img.width}x${img.height}x${img.channels}`, img.data]), problem };
    }
    case "npy": {
      const a = decodeNpy(bytes, name, FUZZ_LIMITS);
      const data = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
      const parts = [a.dtype, a.shape.join(","), data];
      // The class-map conversion the datasets use, when the shape is one.
      if (a.shape.length === 2 && a.shape[0] > 0 && a.shape[1] > 0) parts.push(npyToLabel(a, name).data);
      const problem = data.length > Math.min(FUZZ_LIMITS.maxBytes, bytes.length) ? `${data.length} bytes` : undefined;
      return { digest: sha(parts), problem };
    }
    case "xml": {
      const regions = parseMoNuSegXml(new TextDecoder().decode(bytes), name, FUZZ_LIMITS);
      const r = rasterizeRegions(regions, { width: XML_SIZE, height: XML_SIZE, name });
      const entries = regions.reduce((n, g) => n + 1 + g.xs.length, 0);
      const parts = regions.flatMap((
        g,
      ) => [`${g.index}:${g.id}`, new Uint8Array(g.xs.buffer), new Uint8Array(g.ys.buffer)]);
      parts.push(new Uint8Array(r.instances.buffer), JSON.stringify(r.skipped));
      return { digest: sha(parts), problem: entries > FUZZ_LIMITS.maxEntries ? `${entries} entries` : undefined };
    }
    case "safetensors":
    case "pt":
    case "pickle": {
      const path = `${tmp}/${name}`;
      Deno.writeFileSync(path, bytes);
      using t = format === "safetensors" ? loadSafetensors(path, FUZZ_LIMITS) : loadPt(path, FUZZ_LIMITS);
      return checkpointDigest(t, bytes.length);
    }
  }
}

const ERROR_CLASS: Record<Format, new (...a: never[]) => Error> = {
  png: ImageError,
  tiff: ImageError,
  bmp: ImageError,
  npy: NpyError,
  xml: AnnotationError,
  safetensors: CheckpointError,
  pt: CheckpointError,
  pickle: CheckpointError,
};

/** Why a thrown value breaks the rules, or null for an expected rejection. */
function badError(format: Format, e: unknown, name: string): string | null {
  const one = (x: unknown) => x instanceof Error ? `${x.name}: ${x.message}`.slice(0, 300) : String(x);
  if (!(e instanceof ERROR_CLASS[format])) return `threw ${one(e)}`;
  if (!e.message.includes(name)) return `the error does not name the file: ${one(e)}`;
  // The cause chain: the decoders' own problems, limits and plain Errors are expected; engine
  // errors (TypeError, RangeError other than a limit, ReferenceError, ...) are bugs.
  for (let c = e.cause, depth = 0; c !== undefined && depth < 10; c = (c as Error).cause, depth++) {
    if (c instanceof LimitError || c instanceof DecodeProblem) continue;
    if (!(c instanceof Error)) return `caused by ${one(c)}`;
    const engine = c instanceof TypeError || c instanceof RangeError || c instanceof ReferenceError ||
      c instanceof SyntaxError || c instanceof EvalError || c instanceof URIError;
    if (engine) return `${one(e)} caused by ${one(c)}`;
  }
  return null;
}

/** Runs one case: "accepted", "rejected" or "FAIL <why>". */
export function runCase(c: Case, originals: Map<SeedFile, Decoded>): string {
  const name = `case-${c.seed}.${c.format}`;
  const file = fileOf(c);
  let out: Decoded;
  try {
    out = decode(c.format, file, name);
  } catch (e) {
    const bad = badError(c.format, e, name);
    return bad ? `FAIL ${bad}` : "rejected";
  }
  if (out.problem) return `FAIL accepted over the limits: ${out.problem}`;
  const original = originals.get(c.base)!;
  if ((c.truncatedOnly || (CHECKSUMMED.has(c.format) && !c.unchecked)) && out.digest !== original.digest) {
    return `FAIL silent wrong result: the damaged file (${c.ops.join(" ")}) decoded without error to something else`;
  }
  return "accepted";
}

function peakRss(): number {
  try {
    const m = /VmHWM:\s*(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0; // not Linux: the parent's timeout and the output checks still apply
  }
}

function prepare(): { seeds: Record<Format, SeedFile[]>; originals: Map<SeedFile, Decoded> } {
  const seeds = corpus();
  const originals = new Map<SeedFile, Decoded>();
  for (const list of Object.values(seeds)) {
    for (const s of list) {
      // A seed file that fails to decode is a bug, reported by the parent as a failed start.
      originals.set(
        s,
        decode(s.format, fileOf({ format: s.format, base: s, bytes: s.bytes }), `${s.name}.${s.format}`),
      );
    }
  }
  return { seeds, originals };
}

async function main(): Promise<void> {
  const args = Deno.args;
  const { seeds, originals } = prepare();
  if (args[0] === "--seed") {
    const c = makeCase(Number(args[1]), seeds);
    console.log(`seed ${c.seed}: ${c.format} from ${c.base.name}, ${c.ops.join(" ")}`);
    if (args[2] === "--out") Deno.writeFileSync(args[3], fileOf(c));
    console.log(runCase(c, originals));
    return;
  }
  const baseline = peakRss();
  const write = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
  write(`ready ${baseline} ${tmp}`); // the parent removes the folder if it has to kill this process
  let pending = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const seed = Number(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      write(`start ${seed}`);
      const c = makeCase(seed, seeds);
      let result = runCase(c, originals);
      const peak = peakRss();
      if (!result.startsWith("FAIL") && baseline > 0 && peak - baseline > MEMORY_BOUND) {
        result = `FAIL peak memory rose ${Math.round((peak - baseline) / 2 ** 20)} MiB above start-up`;
      }
      write(`done ${seed} ${c.format} ${result.replaceAll("\n", " ")}`);
      // A memory failure would repeat for every later case (the peak never falls): start afresh.
      if (result.startsWith("FAIL peak memory")) return;
    }
  }
  write(`peak ${peakRss() - baseline}`);
}

try {
  await main();
} finally {
  Deno.removeSync(tmp, { recursive: true });
}
