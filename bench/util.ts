// Shared pieces of the benchmarks: flags, child processes (mdm's and Python's), libtorch flags, and
// the result table.

/** The value after `--name` on the command line. */
export function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
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

/** Compiler flags for a small C++ program against the libtorch the native build uses. */
export function libtorchFlags(): { includes: string[]; libs: string[] } {
  const dir = Deno.env.get("MDM_LIBTORCH");
  if (dir) {
    return {
      includes: [`-I${dir}/include`, `-I${dir}/include/torch/csrc/api/include`],
      libs: [`-L${dir}/lib`, `-Wl,-rpath,${dir}/lib`, "-ltorch", "-ltorch_cpu", "-lc10"],
    };
  }
  return { includes: ["-I/usr/include/torch/csrc/api/include"], libs: ["-ltorch", "-ltorch_cpu", "-lc10"] };
}

/** Prints rows of [what, mdm, pytorch] with the ratio mdm / pytorch (below 1: mdm is faster). */
export function report(title: string, rows: [string, number, number][]): void {
  console.log(`\n${title}`);
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${"".padEnd(w)}  ${"mdm".padStart(10)}  ${"pytorch".padStart(10)}  ${"ratio".padStart(7)}`);
  for (const [name, m, p] of rows) {
    console.log(
      `${name.padEnd(w)}  ${m.toFixed(3).padStart(10)}  ${p.toFixed(3).padStart(10)}  ${
        (m / p).toFixed(3).padStart(7)
      }`,
    );
  }
}
