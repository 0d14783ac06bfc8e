// npm's install step for mdm-torch: the native library (libmdm_torch.so, a thin C shim over libtorch)
// must exist before mdm can load. MDM_NATIVE_LIB naming a built library skips the build; otherwise
// native/build.sh compiles it here against the libtorch scripts/setup.sh finds (MDM_LIBTORCH, the
// PyTorch of python3, a PyTorch wheel, or Debian's libtorch-dev), which needs bash and g++.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const given = process.env.MDM_NATIVE_LIB;
if (given) {
  if (!existsSync(given)) {
    console.error(`mdm-torch: MDM_NATIVE_LIB=${given}: no such file`);
    process.exit(1);
  }
  console.log(`mdm-torch: using the native library ${given} (MDM_NATIVE_LIB)`);
  process.exit(0);
}
const build = spawnSync("bash", [join(root, "native", "build.sh")], {
  cwd: root,
  stdio: ["ignore", "inherit", "inherit"],
});
if (build.error || build.status !== 0) {
  console.error(
    "mdm-torch: could not build the native library" + (build.error ? ` (${build.error.message})` : "") + ".\n" +
      "  Either point MDM_NATIVE_LIB at a built libmdm_torch.so and reinstall, or make libtorch findable\n" +
      "  (MDM_LIBTORCH=<folder with include/ and lib/>, `pip install torch` for python3, or Debian's\n" +
      "  libtorch-dev) and have bash and g++ on PATH, then reinstall.",
  );
  process.exit(1);
}
