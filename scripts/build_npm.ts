// Builds the npm package of mdm for Node 20 into build/npm/: the library (mod.ts and the api/ sub-paths)
// and the two programs bundled by esbuild with the koffi port of the native calls in place of Deno's,
// type declarations by tsc, the native sources with their build script (built on install), and the
// packed tarball. The tools (esbuild, TypeScript, Node's types) come from the npm registry into
// .tools/npm-build, once.
//
//   deno run -A scripts/build_npm.ts          prints the tarball's path last
import { copySync, ensureTools, run } from "./npm_tools.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OUT = `${ROOT}build/npm`;
const SRC = `${OUT}/src`; // the sources as Node sees them: port_node.ts in place of port_deno.ts
const PKG = `${OUT}/package`;
const deno = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));

/** npm's name for the package and its dependencies, from deno.json's import map. */
const NAME = "mdm-torch";
const DEPENDENCIES: Record<string, string> = Object.fromEntries(
  Object.entries(deno.imports as Record<string, string>)
    .filter(([, spec]) => spec.startsWith("npm:"))
    .map(([name, spec]) => [name, spec.slice(spec.lastIndexOf("@") + 1)]),
);
const ENTRIES: Record<string, string> = Object.fromEntries(
  Object.entries(deno.exports as Record<string, string>).map(([sub, file]) => [sub, file.replace(/^\.\//, "")]),
);

function prepare(): void {
  try {
    Deno.removeSync(OUT, { recursive: true });
  } catch { /* first build */ }
  for (const path of ["mod.ts", "api", "src", "ffi", "train.ts", "segment.ts"]) {
    copySync(`${ROOT}${path}`, `${SRC}/${path}`);
  }
  // ESM, as Node runs the bundle (TypeScript reads this for the declarations).
  Deno.writeTextFileSync(`${SRC}/package.json`, '{ "type": "module" }\n');
  // The one file that differs between the runtimes.
  Deno.copyFileSync(`${ROOT}ffi/port_node.ts`, `${SRC}/ffi/port_deno.ts`);
  Deno.removeSync(`${SRC}/ffi/port_node.ts`);
}

async function bundle(tools: string): Promise<void> {
  const entries = [...Object.values(ENTRIES), "train.ts", "segment.ts"].map((f) => `${SRC}/${f}`);
  await run(`${tools}/node_modules/.bin/esbuild`, [
    ...entries,
    "--bundle",
    "--splitting",
    "--format=esm",
    "--platform=node",
    "--target=node20",
    `--outbase=${SRC}`,
    `--outdir=${PKG}/dist`,
    ...Object.keys(DEPENDENCIES).map((d) => `--external:${d}`),
    // The programs run their main when loaded as the entry point, which Node has no flag for.
    "--define:import.meta.main=true",
    "--log-level=warning",
  ], ROOT);
}

async function declarations(tools: string): Promise<void> {
  const tsconfig = {
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2024", "DOM"],
      types: ["node"],
      typeRoots: [`${tools}/node_modules/@types`],
      strict: true,
      declaration: true,
      emitDeclarationOnly: true,
      allowImportingTsExtensions: true,
      rewriteRelativeImportExtensions: true,
      skipLibCheck: true,
      outDir: `${PKG}/dist`,
      rootDir: SRC,
      baseUrl: SRC,
      paths: { koffi: [`${tools}/node_modules/koffi`] },
    },
    files: [...Object.values(ENTRIES)].map((f) => `${SRC}/${f}`),
  };
  Deno.writeTextFileSync(`${OUT}/tsconfig.json`, JSON.stringify(tsconfig, null, 2));
  // The npm packages' own types (fast-png, jpeg-js, koffi) resolve from the tools' node_modules.
  try {
    Deno.symlinkSync(`${tools}/node_modules`, `${OUT}/node_modules`);
  } catch { /* exists */ }
  await run(`${tools}/node_modules/.bin/tsc`, ["-p", `${OUT}/tsconfig.json`], ROOT);
}

function packageFiles(): void {
  const exportsMap: Record<string, { types: string; import: string }> = {};
  for (const [sub, file] of Object.entries(ENTRIES)) {
    const base = file.replace(/\.ts$/, "");
    exportsMap[sub] = { types: `./dist/${base}.d.ts`, import: `./dist/${base}.js` };
  }
  const pkg = {
    name: NAME,
    version: deno.version,
    description: "Masked diffusion models (MDM) on libtorch: self-supervised pre-training of a guided-diffusion " +
      "UNet and few-shot segmentation from its decoder features.",
    type: "module",
    engines: { node: ">=20" },
    exports: exportsMap,
    bin: { "mdm-train": "./bin/train.js", "mdm-segment": "./bin/segment.js" },
    files: ["dist", "bin", "native", "scripts/setup.sh", "install.mjs", "README.md"],
    scripts: { install: "node install.mjs" },
    dependencies: DEPENDENCIES,
  };
  Deno.writeTextFileSync(`${PKG}/package.json`, JSON.stringify(pkg, null, 2) + "\n");
  Deno.mkdirSync(`${PKG}/bin`, { recursive: true });
  for (const program of ["train", "segment"]) {
    Deno.writeTextFileSync(`${PKG}/bin/${program}.js`, `#!/usr/bin/env node\nimport "../dist/${program}.js";\n`);
    Deno.chmodSync(`${PKG}/bin/${program}.js`, 0o755);
  }
  copySync(`${ROOT}native`, `${PKG}/native`);
  Deno.mkdirSync(`${PKG}/scripts`, { recursive: true });
  Deno.copyFileSync(`${ROOT}scripts/setup.sh`, `${PKG}/scripts/setup.sh`);
  Deno.copyFileSync(`${ROOT}npm/install.mjs`, `${PKG}/install.mjs`);
  Deno.copyFileSync(`${ROOT}npm/README.md`, `${PKG}/README.md`);
}

if (import.meta.main) {
  const tools = await ensureTools();
  prepare();
  await bundle(tools);
  await declarations(tools);
  packageFiles();
  const packed = await run("npm", ["pack", "--silent", `--pack-destination=${OUT}`], PKG);
  console.log(`${OUT}/${packed.trim().split("\n").pop()}`);
}
