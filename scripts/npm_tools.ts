// What the npm build (build_npm.ts) and its test share: the build tools from the npm registry,
// installed once into .tools/npm-build, a command runner and a recursive copy.

const ROOT = new URL("../", import.meta.url).pathname;

/** Pinned: the build must not change under the project's feet. */
const TOOLS = {
  esbuild: "0.28.2",
  typescript: "5.9.3",
  "@types/node": "20.19.43",
  koffi: "2.16.3",
  "fast-png": "8.0.0",
  "jpeg-js": "0.4.4",
};

/** Runs a command, returning its stdout; throws with its stderr when it fails. */
export async function run(cmd: string, args: string[], cwd: string, env?: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.slice(0, 3).join(" ")} ... failed (${out.code}):\n${dec.decode(out.stderr)}${
        dec.decode(out.stdout)
      }`,
    );
  }
  return dec.decode(out.stdout);
}

/** Installs the build tools into .tools/npm-build unless they are there; returns that folder. */
export async function ensureTools(): Promise<string> {
  const dir = `${ROOT}.tools/npm-build`;
  const stamp = `${dir}/.versions`;
  const want = JSON.stringify(TOOLS);
  try {
    if (Deno.readTextFileSync(stamp) === want) return dir;
  } catch { /* not installed */ }
  Deno.mkdirSync(dir, { recursive: true });
  const specs = Object.entries(TOOLS).map(([name, version]) => `${name}@${version}`);
  await run(
    "npm",
    ["install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save", "--loglevel=error", ...specs],
    ROOT,
  );
  Deno.writeTextFileSync(stamp, want);
  return dir;
}

/** Copies a file or a folder (recursively, following no links out of it). */
export function copySync(from: string, to: string): void {
  const info = Deno.statSync(from);
  if (info.isDirectory) {
    Deno.mkdirSync(to, { recursive: true });
    for (const entry of Deno.readDirSync(from)) copySync(`${from}/${entry.name}`, `${to}/${entry.name}`);
  } else {
    Deno.mkdirSync(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    Deno.copyFileSync(from, to);
  }
}
