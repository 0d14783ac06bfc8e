// Runs PyTorch (the Python twin of the libtorch the shim was built against, chosen by
// scripts/setup.sh: MDM_TORCH_PYTHON with its PYTHONPATH) on the same inputs as a test, in one
// Python process per batch of cases, and compares results with stated tolerances.
import { type Device, type DType, setDefaultDevice, type Tensor } from "../../mod.ts";
import { decodeBase64, encodeBase64 } from "../../src/util/base64.ts";

/** A tensor as PyTorch returned it (half precision widened to float32). */
export interface RefTensor {
  dtype: DType;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
}
export type RefValue = RefTensor | number | boolean | string | null | RefValue[] | { [k: string]: RefValue };

export interface RefCase {
  /** A Python expression, or statements assigning `result`. */
  code: string;
  inputs?: Record<string, Tensor>;
  /** Seeds torch.manual_seed and the generator `g` before the code runs. */
  seed?: number;
  /** Inputs that should require grad on the Python side. */
  grad?: string[];
}

// MDM_DEVICE=cuda runs the suite with tensors created on that device; references stay on the CPU.
export const DEVICE = (Deno.env.get("MDM_DEVICE") ?? "cpu") as Device;
setDefaultDevice(DEVICE);

const PYTHON = Deno.env.get("MDM_TORCH_PYTHON") || "/usr/bin/python3";
// Only the reference process sees the wheel's folder: other Python oracles keep their own torch.
const PYTHONPATH = Deno.env.get("MDM_TORCH_PYTHONPATH") ?? "";
// SciPy, scikit-image and scikit-learn come from Debian's Python, whatever libtorch is under test.
const ORACLE_PYTHON = Deno.env.get("MDM_PYTHON") || "/usr/bin/python3";
const RUNNER = new URL("./torch_ref.py", import.meta.url).pathname;

function encodeTensor(t: Tensor, requiresGrad: boolean) {
  const host = t.toArray();
  const bytes = new Uint8Array(host.buffer, host.byteOffset, host.byteLength);
  return { dtype: t.dtype, shape: [...t.shape], data: encodeBase64(bytes), requires_grad: requiresGrad };
}

function decodeValue(v: unknown): RefValue {
  if (Array.isArray(v)) return v.map(decodeValue);
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.error === "string") throw new Error(`PyTorch reference failed: ${o.error}`);
    if (typeof o.dtype === "string" && Array.isArray(o.shape) && typeof o.data === "string") {
      const bytes = decodeBase64(o.data);
      const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      const dtype = o.dtype as DType;
      const data = dtype === "float64"
        ? new Float64Array(buf)
        : dtype === "int64"
        ? new BigInt64Array(buf)
        : dtype === "int32"
        ? new Int32Array(buf)
        : dtype === "uint8" || dtype === "bool"
        ? new Uint8Array(buf)
        : new Float32Array(buf);
      return { dtype, shape: o.shape as number[], data };
    }
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, decodeValue(x)]));
  }
  return v as RefValue;
}

/**
 * Evaluates every case in one Python process; results are keyed like the cases. By default that is
 * the PyTorch of the libtorch under test; `oracle` runs Debian's Python instead, for cases whose
 * values come from SciPy, scikit-image or scikit-learn (torch there only carries arrays).
 */
export async function torchRef(
  cases: Record<string, RefCase>,
  threads = 1,
  opts: { oracle?: boolean } = {},
): Promise<Record<string, RefValue>> {
  const request = {
    threads,
    cases: Object.fromEntries(
      Object.entries(cases).map(([name, c]) => [
        name,
        {
          code: c.code,
          seed: c.seed,
          inputs: Object.fromEntries(
            Object.entries(c.inputs ?? {}).map(([k, t]) => [k, encodeTensor(t, c.grad?.includes(k) ?? false)]),
          ),
        },
      ]),
    ),
  };
  const child = new Deno.Command(opts.oracle ? ORACLE_PYTHON : PYTHON, {
    args: [RUNNER],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: !opts.oracle && PYTHONPATH ? { PYTHONPATH } : {},
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(request)));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`PyTorch reference process failed:\n${new TextDecoder().decode(out.stderr)}`);
  const raw = JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, unknown>;
  const result: Record<string, RefValue> = {};
  for (const [k, v] of Object.entries(raw)) {
    try {
      result[k] = decodeValue(v);
    } catch (e) {
      result[k] = { error: (e as Error).message } as unknown as RefValue;
    }
  }
  return result;
}

/** An mdm float32 tensor's values as a reference tensor, for comparing against another mdm result. */
export function refOf(t: Tensor): RefTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: t.toArray() as Float32Array };
}

/** Narrows a reference value to a tensor, failing with the case's error if it had one. */
export function refTensor(v: RefValue | undefined, name = "reference"): RefTensor {
  if (v !== null && typeof v === "object" && "error" in v) throw new Error(String((v as { error: unknown }).error));
  if (v === null || typeof v !== "object" || !("dtype" in v)) throw new Error(`${name} is not a tensor`);
  return v as RefTensor;
}

export interface Tolerance {
  rtol?: number;
  atol?: number;
}

function toNumbers(a: ArrayLike<number | bigint>): number[] {
  return Array.from(a as ArrayLike<number>, (x) => Number(x));
}

/**
 * Asserts that an mdm tensor equals a PyTorch result: same shape, same dtype (unless told
 * otherwise) and |a - b| <= atol + rtol·|b| elementwise (NaNs must match).
 */
export function assertClose(
  actual: Tensor,
  expected: RefValue | undefined,
  tol: Tolerance & { checkDtype?: boolean } = {},
  what = "tensor",
): void {
  const ref = refTensor(expected, what);
  const shape = [...actual.shape];
  if (JSON.stringify(shape) !== JSON.stringify(ref.shape)) {
    throw new Error(`${what}: shape [${shape}] differs from PyTorch's [${ref.shape}]`);
  }
  if ((tol.checkDtype ?? true) && actual.dtype !== ref.dtype) {
    throw new Error(`${what}: dtype ${actual.dtype} differs from PyTorch's ${ref.dtype}`);
  }
  assertArrayClose(toNumbers(actual.toArray()), toNumbers(ref.data), tol, what);
}

export function assertArrayClose(a: number[], b: number[], tol: Tolerance = {}, what = "values"): void {
  const rtol = tol.rtol ?? 1e-5, atol = tol.atol ?? 1e-6;
  if (a.length !== b.length) throw new Error(`${what}: ${a.length} values, expected ${b.length}`);
  let worst = -1, worstErr = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) throw new Error(`${what}[${i}]: ${x} vs ${y}`);
      continue;
    }
    if (x === y) continue;
    const err = Math.abs(x - y) - (atol + rtol * Math.abs(y));
    if (err > worstErr) [worst, worstErr] = [i, err];
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${a[worst]}, PyTorch gives ${b[worst]} (|diff| ${
        Math.abs(a[worst] - b[worst])
      } > atol ${atol} + rtol ${rtol}·|expected|)`,
    );
  }
}
