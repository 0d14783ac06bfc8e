// Inputs that once crashed the process or gave silent wrong results at the native boundary.
import assert from "node:assert/strict";
import { arange, full, tensor, TorchError, zeros } from "../mod.ts";
import { ROOT } from "./helpers/scripts.ts";

const MIN64 = -(2n ** 63n);

// Integer remainder of the minimum value by -1 traps (SIGFPE) in the CPU's division instruction,
// which kills the process: so each case runs in a child process, and the expected values are
// Python's integer arithmetic (x % -1 == 0 for every x; -7 % 3 == 2; a % 0 raises).
const TRAP_CHILD = `
import { full, tensor, TorchError } from "${ROOT}mod.ts";
const MIN64 = -(2n ** 63n);
const cases = {
  "int64 scalar": () => tensor(new BigInt64Array([MIN64, 7n, -7n, 5n])).remainder(-1),
  "int64 tensor": () => tensor(new BigInt64Array([MIN64, 7n, -7n, MIN64])).remainder(tensor(new BigInt64Array([-1n, -1n, 3n, 2n]))),
  "int32 scalar": () => full([3], -(2 ** 31), { dtype: "int32" }).remainder(-1),
  "int32 tensor": () => full([3], -(2 ** 31), { dtype: "int32" }).remainder(full([3], -1, { dtype: "int32" })),
  "full int64 min": () => full([1], -(2 ** 63), { dtype: "int64" }).remainder(-1),
  "by zero scalar": () => tensor(new BigInt64Array([5n])).remainder(0),
  "by zero tensor": () => tensor(new BigInt64Array([5n])).remainder(tensor(new BigInt64Array([0n]))),
};
const out = {};
for (const [name, fn] of Object.entries(cases)) {
  console.error("case", name); // the last one printed is the one that crashed, if any
  try {
    out[name] = Array.from(fn().toArray(), String);
  } catch (e) {
    out[name] = e instanceof TorchError ? { error: e.message } : { unexpected: String(e) };
  }
}
console.log(JSON.stringify(out));
`;

Deno.test("integer remainder of the minimum by -1 is 0, not a SIGFPE; by 0 a named error", async () => {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, TRAP_CHILD);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", "--config", `${ROOT}deno.json`, file],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const err = new TextDecoder().decode(r.stderr);
    assert.ok(r.success, `child died (signal ${r.signal}, code ${r.code}) at ${err.trim().split("\n").at(-1)}`);
    const out = JSON.parse(new TextDecoder().decode(r.stdout));
    assert.deepEqual(out["int64 scalar"], ["0", "0", "0", "0"]);
    assert.deepEqual(out["int64 tensor"], ["0", "0", "2", "0"]);
    assert.deepEqual(out["int32 scalar"], ["0", "0", "0"]);
    assert.deepEqual(out["int32 tensor"], ["0", "0", "0"]);
    assert.deepEqual(out["full int64 min"], ["0"]);
    for (const k of ["by zero scalar", "by zero tensor"]) {
      assert.match(out[k].error ?? "", /^remainder\(.*ZeroDivisionError/, `${k}: ${JSON.stringify(out[k])}`);
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("remainder keeps PyTorch's results where nothing traps (signs follow the divisor)", () => {
  // Python: [7 % -2, -7 % 2, -7 % -2, 0 % -3] = [-1, 1, -1, 0]; unsigned 200 % 7 = 4.
  const a = tensor(new BigInt64Array([7n, -7n, -7n, 0n]));
  const b = tensor(new BigInt64Array([-2n, 2n, -2n, -3n]));
  assert.deepEqual(Array.from(a.remainder(b).toArray(), Number), [-1, 1, -1, 0]);
  assert.deepEqual(Array.from(full([2], 200, { dtype: "uint8" }).remainder(7).toArray()), [4, 4]);
  assert.deepEqual(Array.from(tensor(new BigInt64Array([MIN64])).remainder(2).toArray(), Number), [0]);
  // Floats are untouched: -(2^63) % -1 is -0 in IEEE fmod terms and 0 for Python floats.
  assert.deepEqual(Array.from(full([1], -5.5).remainder(-1).toArray()), [-0.5]);
  assert.throws(() => zeros([2], { dtype: "int64" }).remainder(0), TorchError);
});

Deno.test("300 unsqueezes give 301 dimensions, every size read (the shared shape buffer holds 256)", () => {
  let t = arange(0, 2);
  for (let i = 0; i < 300; i++) t = t.unsqueeze(0);
  assert.equal(t.ndim, 301);
  assert.deepEqual(t.shape, [...new Array(300).fill(1), 2]);
  assert.deepEqual(Array.from(t.reshape(2).toArray(), Number), [0, 1]);
});
