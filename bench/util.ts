// Shared pieces of the benchmarks: flags, child processes (mdm's and Python's), libtorch flags, images
// decoded for the Python side, and the result table.
import { readImage, toRGB } from "../src/data/image.ts";
import type { Device } from "../src/device.ts";
import { defaultChannelsLast } from "../src/models/unet/config.ts";

/** The value after `--name` on the command line. */
export function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

/**
 * mdm's UNet layout for a bench on `device`: `--layout nchw|channels-last`, or the UNet's own
 * default there (`defaultChannelsLast`). Returns whether it is channels-last.
 */
export function layoutFlag(device: Device): boolean {
  const layout = flag("layout");
  if (layout === undefined) return defaultChannelsLast(device);
  if (layout !== "nchw" && layout !== "channels-last") throw new Error(`--layout ${layout}: nchw or channels-last`);
  return layout === "channels-last";
}

/** The flag that gives a child process the same layout. */
export function layoutArgs(channelsLast: boolean): string[] {
  return ["--layout", channelsLast ? "channels-last" : "nchw"];
}

/**
 * Runs a benchmark script in a Deno process of its own (so that its peak memory is its own) and
 * parses the JSON object it prints last.
 */
export async function denoJson<T = Record<string, number>>(script: string, args: string[], what: string): Promise<T> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script, ...args], stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`${what} failed`);
  return parseLastLine(out.stdout);
}

// deno-lint-ignore no-explicit-any
function parseLastLine(stdout: Uint8Array): any {
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

/**
 * Runs a Python benchmark script with Debian's torch and parses the JSON it prints. By default its
 * OpenBLAS pool gets one thread, as mdm's setNumThreads gives its own: equal settings on both sides.
 */
export async function pythonJson(
  script: string,
  args: (string | number)[],
  env: Record<string, string> = { OPENBLAS_NUM_THREADS: "1" },
): Promise<Record<string, number>> {
  const pythonPath = Deno.env.get("MDM_TORCH_PYTHONPATH");
  const out = await new Deno.Command(Deno.env.get("MDM_TORCH_PYTHON") || "/usr/bin/python3", {
    args: [script, ...args.map(String)],
    stderr: "inherit",
    env: pythonPath ? { ...env, PYTHONPATH: pythonPath } : env,
  })
    .output();
  if (!out.success) throw new Error(`${script} failed`);
  return parseLastLine(out.stdout);
}

/**
 * Compiler flags for a small C++ program against the libtorch of the last setup (build/setup.env, as
 * scripts/bench.sh exports it), and a name that tells builds for different libtorches apart.
 */
export function libtorchFlags(): { includes: string[]; libs: string[]; tag: string } {
  const inc = Deno.env.get("MDM_TORCH_INCLUDE") ?? "/usr/include";
  const lib = Deno.env.get("MDM_TORCH_LIBDIR") ?? "/usr/lib/x86_64-linux-gnu";
  const abi = Deno.env.get("MDM_TORCH_ABI") ?? "1", std = Deno.env.get("MDM_TORCH_CXX_STD") ?? "17";
  return {
    includes: [`-std=c++${std}`, `-D_GLIBCXX_USE_CXX11_ABI=${abi}`, `-I${inc}`, `-I${inc}/torch/csrc/api/include`],
    libs: [`-L${lib}`, `-Wl,-rpath,${lib}`, "-ltorch", "-ltorch_cpu", "-lc10"],
    tag: Deno.env.get("MDM_TORCH_VERSION") ?? "system",
  };
}

/** Writes a uint8 array of the given shape as a NumPy .npy file (format 1.0). */
function writeNpyU8(path: string, data: Uint8Array, shape: number[]): void {
  let header = `{'descr': '|u1', 'fortran_order': False, 'shape': (${shape.join(", ")}${
    shape.length === 1 ? "," : ""
  }), }`;
  header = header.padEnd(Math.ceil((10 + header.length + 1) / 64) * 64 - 10 - 1) + "\n";
  const out = new Uint8Array(10 + header.length + data.length);
  out.set([0x93, ..."NUMPY".split("").map((c) => c.charCodeAt(0)), 1, 0, header.length & 255, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(data, 10 + header.length);
  Deno.writeFileSync(path, out);
}

/**
 * Decodes images with mdm's decoders into .npy files in `dir` (RGB [H, W, 3], or a label's first
 * channel [H, W]) and returns their paths: the Python side then needs numpy only, not PIL, whose
 * Python may be one a PyTorch wheel runs on.
 */
export async function npyCopies(paths: string[], dir: string, kind: "rgb" | "label"): Promise<string[]> {
  Deno.mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (const [i, p] of paths.entries()) {
    const image = await readImage(p);
    const file = `${dir}/${kind}-${i}.npy`;
    if (kind === "rgb") {
      const rgb = toRGB(image);
      writeNpyU8(file, rgb.data, [rgb.height, rgb.width, 3]);
    } else {
      const label = new Uint8Array(image.width * image.height);
      for (let j = 0; j < label.length; j++) label[j] = image.data[j * image.channels];
      writeNpyU8(file, label, [image.height, image.width]);
    }
    out.push(file);
  }
  return out;
}

/**
 * Prints rows of [what, a, b] with the ratio a / b; the columns are mdm and PyTorch unless named
 * (below 1: the first is faster).
 */
export function report(title: string, rows: [string, number, number][], columns = ["mdm", "pytorch"]): void {
  console.log(`\n${title}`);
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${"".padEnd(w)}  ${columns[0].padStart(10)}  ${columns[1].padStart(10)}  ${"ratio".padStart(7)}`);
  for (const [name, m, p] of rows) {
    console.log(
      `${name.padEnd(w)}  ${m.toFixed(3).padStart(10)}  ${p.toFixed(3).padStart(10)}  ${
        (m / p).toFixed(3).padStart(7)
      }`,
    );
  }
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b), mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export { perCall } from "./per_call.mjs";
