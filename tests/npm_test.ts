// The npm package as a Node user gets it: scripts/build_npm.ts builds and packs it, Node 20's npm
// installs the tarball into an empty folder (using this checkout's native library through
// MDM_NATIVE_LIB, as the install script documents), and `node --test` runs tests/node/mdm_node_suite.mjs
// there: tensor ops against values computed by hand, a UNet forward pass that must equal this Deno
// process's result on the same weights bit for bit, five pre-training steps, and the installed
// programs on the synthetic set. Skips with a message when node or npm is absent.
import assert from "node:assert/strict";
import { manualSeed, noGrad, randn, saveSafetensors, tensor, UNet } from "../mod.ts";
import { randomize } from "./helpers/unet_port.ts";
import { ROOT, tempDir } from "./helpers/scripts.ts";

function have(cmd: string): boolean {
  try {
    return new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}
const HAVE_NODE = have("node") && have("npm");
if (!HAVE_NODE) console.log("npm_test: skipping the npm package tests: node and npm are not on PATH");

async function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** What Deno computes, for Node to reproduce: a small UNet's weights, an input and the output. */
function writeFixture(dir: string): void {
  const unet = { imageSize: 16, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [8], numResBlocks: 1 };
  manualSeed(3);
  const model = new UNet(unet);
  randomize(model); // non-zero everywhere, so that every layer shows in the output
  model.eval();
  saveSafetensors(`${dir}/weights.safetensors`, Object.fromEntries(model.namedParameters()));
  const x = randn([2, 3, 16, 16]);
  const timesteps = [17, 604];
  const out = noGrad(() => model.forward(x, tensor(new BigInt64Array(timesteps.map(BigInt)))).output!);
  Deno.writeFileSync(`${dir}/input.f32`, new Uint8Array(x.toArray().buffer));
  Deno.writeFileSync(`${dir}/output.f32`, new Uint8Array((out.toArray() as Float32Array).buffer));
  Deno.writeTextFileSync(
    `${dir}/fixture.json`,
    JSON.stringify({ unet, inputShape: [...x.shape], outputShape: [...out.shape], timesteps }),
  );
}

Deno.test({
  name: "npm package: built, packed, installed with npm and run under Node",
  ignore: !HAVE_NODE,
  sanitizeResources: false,
  async fn(t) {
    const lib = Deno.env.get("MDM_NATIVE_LIB") || `${ROOT}build/libmdm_torch.so`;
    let tarball = "";
    await t.step("scripts/build_npm.ts builds and packs the package", async () => {
      const r = await sh(Deno.execPath(), ["run", "-A", `${ROOT}scripts/build_npm.ts`], ROOT);
      assert.equal(r.code, 0, r.stderr);
      tarball = r.stdout.trim().split("\n").pop()!;
      assert.match(tarball, /mdm-torch-[\d.]+\.tgz$/);
    });
    const project = tempDir("mdm-npm-");
    await t.step("npm installs the tarball into an empty project", async () => {
      Deno.writeTextFileSync(`${project}/package.json`, '{ "name": "try-mdm", "private": true, "type": "module" }\n');
      const r = await sh("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball], project, {
        MDM_NATIVE_LIB: lib,
      });
      assert.equal(r.code, 0, r.stderr);
    });
    await t.step("without a library or a libtorch, the install fails saying what to do", async () => {
      const bare = tempDir("mdm-npm-bare-");
      Deno.writeTextFileSync(`${bare}/package.json`, '{ "name": "try-mdm", "private": true, "type": "module" }\n');
      const r = await sh("npm", ["install", "--no-audit", "--no-fund", tarball], bare, {
        MDM_NATIVE_LIB: "",
        MDM_LIBTORCH: `${bare}/no-libtorch-here`,
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, /MDM_LIBTORCH=.*no-libtorch-here: expected a folder with include\/ and lib\//);
      assert.match(r.stdout + r.stderr, /point MDM_NATIVE_LIB at a built libmdm_torch\.so/);
    });
    const fixture = tempDir("mdm-npm-fixture-");
    writeFixture(fixture);
    Deno.copyFileSync(`${ROOT}tests/node/mdm_node_suite.mjs`, `${project}/mdm_node_suite.mjs`);
    const r = await sh("node", ["--test", "--test-reporter=tap", "mdm_node_suite.mjs"], project, {
      MDM_NATIVE_LIB: lib,
      MDM_NPM_FIXTURE: fixture,
    });
    // One step per Node test, named as Node names it, so that the summary counts them.
    const results = [...r.stdout.matchAll(/^(not ok|ok) \d+ - (.*)$/gm)];
    assert.ok(results.length >= 4, `node --test ran ${results.length} tests:\n${r.stdout}\n${r.stderr}`);
    for (const [, status, name] of results) {
      await t.step(`under Node: ${name}`, () => {
        assert.equal(status, "ok", `failed under Node:\n${r.stdout}\n${r.stderr}`);
      });
    }
    assert.equal(r.code, 0, r.stdout + r.stderr);
  },
});
