// scripts/setup.sh's find_libtorch: where libtorch comes from, and its version, C++ ABI and C++
// standard read from the library's own files. Fake libtorch folders (a version.h, a libc10.so built
// here with one or the other std::string ABI) give the cases no machine has.
import assert from "node:assert/strict";
import { ROOT, tempDir } from "./helpers/scripts.ts";

interface Found {
  ok: boolean;
  vars: Record<string, string>;
  stderr: string;
}

/** Runs find_libtorch (and optionally check_torch_python) with the given environment. */
function findLibtorch(env: Record<string, string>, check = false): Found {
  const script = `source "${ROOT}scripts/setup.sh" && find_libtorch${check ? " && check_torch_python" : ""} && ` +
    `for v in TORCH_VERSION TORCH_VERSION_MAJOR TORCH_VERSION_MINOR TORCH_ABI TORCH_CXX_STD TORCH_INCLUDE TORCH_LIBDIR ` +
    `TORCH_PYTHON TORCH_PYTHONPATH TORCH_FROM; do echo "$v=\${!v}"; done`;
  const out = new Deno.Command("bash", {
    args: ["-c", script],
    env: { MDM_LIBTORCH: "", MDM_TORCH_WHEEL: "", MDM_TORCH_PYTHON: "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const vars: Record<string, string> = {};
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) vars[line.slice(0, i)] = line.slice(i + 1);
  }
  return { ok: out.success, vars, stderr: new TextDecoder().decode(out.stderr) };
}

const scratch = tempDir("mdm-setup-");

function existsDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** A libtorch folder with the given version.h location and a libc10.so of the given std::string ABI. */
function fakeLibtorch(name: string, o: { version: string; versionAt: string; abi: 0 | 1; config?: string }): string {
  const dir = `${scratch}/${name}`;
  const [major, minor, patch] = o.version.split(".");
  Deno.mkdirSync(`${dir}/include/${o.versionAt}`, { recursive: true });
  Deno.mkdirSync(`${dir}/lib`, { recursive: true });
  Deno.writeTextFileSync(
    `${dir}/include/${o.versionAt}/version.h`,
    `#pragma once\n#define TORCH_VERSION_MAJOR ${major}\n#define TORCH_VERSION_MINOR ${minor}\n#define TORCH_VERSION_PATCH ${patch}\n`,
  );
  Deno.writeTextFileSync(
    `${dir}/c10.cpp`,
    "#include <string>\nstd::string c10_name(const std::string& s) { return s; }\n",
  );
  const cc = new Deno.Command("g++", {
    args: ["-shared", "-fPIC", `-D_GLIBCXX_USE_CXX11_ABI=${o.abi}`, `${dir}/c10.cpp`, "-o", `${dir}/lib/libc10.so`],
  }).outputSync();
  assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
  Deno.writeFileSync(`${dir}/lib/libtorch_cpu.so`, new Uint8Array());
  if (o.config) {
    Deno.mkdirSync(`${dir}/share/cmake/Torch`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/share/cmake/Torch/TorchConfig.cmake`, o.config);
  }
  return dir;
}

Deno.test("find_libtorch: version from version.h wherever it is, ABI from libc10.so's symbols", () => {
  const v2 = fakeLibtorch("v2", { version: "2.13.0", versionAt: "torch/headeronly", abi: 1 });
  let r = findLibtorch({ MDM_LIBTORCH: v2 });
  assert.ok(r.ok, r.stderr);
  assert.equal(r.vars.TORCH_VERSION, "2.13.0");
  assert.equal(r.vars.TORCH_ABI, "1");
  assert.equal(r.vars.TORCH_LIBDIR, `${v2}/lib`);
  assert.equal(r.vars.TORCH_FROM, `MDM_LIBTORCH=${v2}`);

  const old = fakeLibtorch("old", {
    version: "1.12.1",
    versionAt: "torch/csrc/api/include/torch",
    abi: 0,
    config: "set_target_properties(torch PROPERTIES CXX_STANDARD 14)\n",
  });
  r = findLibtorch({ MDM_LIBTORCH: old });
  assert.ok(r.ok, r.stderr);
  assert.deepEqual([r.vars.TORCH_VERSION, r.vars.TORCH_ABI, r.vars.TORCH_CXX_STD], ["1.12.1", "0", "17"]);

  const cxx20 = fakeLibtorch("cxx20", {
    version: "2.9.1",
    versionAt: "torch/headeronly",
    abi: 1,
    config: "  CXX_STANDARD 20\n",
  });
  assert.equal(findLibtorch({ MDM_LIBTORCH: cxx20 }).vars.TORCH_CXX_STD, "20");
});

Deno.test("find_libtorch: with nothing named, the PyTorch that `python3` imports comes first", () => {
  // A `python3` first on PATH whose torch package is a fake libtorch folder of version 2.11.0.
  const site = `${scratch}/site`;
  fakeLibtorch("site/torch", { version: "2.11.0", versionAt: "torch/headeronly", abi: 1 });
  Deno.writeTextFileSync(`${site}/torch/__init__.py`, "__version__ = '2.11.0'\n");
  Deno.mkdirSync(`${scratch}/bin`, { recursive: true });
  Deno.writeTextFileSync(`${scratch}/bin/python3`, `#!/bin/sh\nPYTHONPATH=${site} exec /usr/bin/python3 "$@"\n`);
  Deno.chmodSync(`${scratch}/bin/python3`, 0o755);
  const r = findLibtorch({ PATH: `${scratch}/bin:${Deno.env.get("PATH")}` });
  assert.ok(r.ok, r.stderr);
  assert.equal(r.vars.TORCH_VERSION, "2.11.0");
  assert.equal(r.vars.TORCH_LIBDIR, `${site}/torch/lib`);
  assert.equal(r.vars.TORCH_FROM, `PyTorch of ${scratch}/bin/python3`);
});

Deno.test("find_libtorch: what cannot be used is a setup error naming it", () => {
  let r = findLibtorch({ MDM_LIBTORCH: `${scratch}/nowhere` });
  assert.ok(!r.ok);
  assert.match(r.stderr, /MDM_LIBTORCH=.*nowhere: expected a folder with include\/ and lib\//);

  const clash = fakeLibtorch("clash", {
    version: "2.1.0",
    versionAt: "torch/headeronly",
    abi: 1,
    config: 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")\n',
  });
  r = findLibtorch({ MDM_LIBTORCH: clash });
  assert.ok(!r.ok);
  assert.match(r.stderr, /_GLIBCXX_USE_CXX11_ABI=0 but libc10.so exports the other ABI/);

  const headless = `${scratch}/headless`;
  Deno.mkdirSync(`${headless}/include`, { recursive: true });
  Deno.mkdirSync(`${headless}/lib`, { recursive: true });
  Deno.writeFileSync(`${headless}/lib/libtorch_cpu.so`, new Uint8Array());
  r = findLibtorch({ MDM_LIBTORCH: headless });
  assert.ok(!r.ok);
  assert.match(r.stderr, /no torch version.h under/);

  r = findLibtorch({ MDM_LIBTORCH: "wheel", MDM_TORCH_WHEEL: `${scratch}/missing.whl` });
  assert.ok(!r.ok);
  assert.match(r.stderr, /MDM_TORCH_WHEEL=.*missing.whl: no such file/);
});

Deno.test("check_torch_python: a reference PyTorch of another version is refused, naming both", () => {
  // A wheel's torch/ folder (its parent goes on PYTHONPATH) whose `import torch` says 9.9.9.
  const fake = `${scratch}/pyfake`;
  fakeLibtorch("pyfake/torch", { version: "2.13.0", versionAt: "torch/headeronly", abi: 1 });
  Deno.writeTextFileSync(
    `${fake}/torch/__init__.py`,
    "__version__ = '9.9.9'\nclass _C:\n    _GLIBCXX_USE_CXX11_ABI = True\n",
  );
  const r = findLibtorch({ MDM_LIBTORCH: `${fake}/torch`, MDM_TORCH_PYTHON: "/usr/bin/python3" }, true);
  assert.ok(!r.ok);
  assert.match(r.stderr, /is '9\.9\.9 1' \(version, C\+\+11 ABI\) but MDM_LIBTORCH=.* is '2\.13\.0 1'/);
});

Deno.test("find_libtorch on this machine: Debian's 1.13 and the image's wheel, with their Python twins", {
  ignore: !existsDir("/usr/include/torch"),
}, () => {
  const debian = findLibtorch({ MDM_LIBTORCH: "debian" }, true);
  assert.ok(debian.ok, debian.stderr);
  assert.equal(debian.vars.TORCH_VERSION_MAJOR, "1");
  assert.equal(debian.vars.TORCH_PYTHON, "/usr/bin/python3");
  const wheel = findLibtorch({ MDM_LIBTORCH: "wheel" }, true);
  if (!wheel.ok && /no MDM_TORCH_WHEEL and no wheel/.test(wheel.stderr)) {
    console.log("setup_test: no PyTorch wheel on this machine; the wheel route is not checked");
    return;
  }
  assert.ok(wheel.ok, wheel.stderr);
  assert.equal(wheel.vars.TORCH_VERSION_MAJOR, "2");
  assert.equal(wheel.vars.TORCH_ABI, "1");
  assert.match(wheel.vars.TORCH_PYTHONPATH, /\.tools\/torch-2/);
  // CI's PATH may lead to Debian's python3.11, whose typing_extensions is too old for the wheel: the
  // setup looks further (python3.X, pyenv, /usr/local) for a CPython that imports it.
  const bare = findLibtorch({ MDM_LIBTORCH: "wheel", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, true);
  assert.ok(bare.ok, bare.stderr);
  assert.equal(bare.vars.TORCH_VERSION, wheel.vars.TORCH_VERSION);
});
