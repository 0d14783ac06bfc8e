// One harness for the op tests. A case is data, {op, args, kwargs}: mdm evaluates it through the
// op table (op_table.ts) and PyTorch evaluates the same call on the same input values, every case
// of a file in one Python process. Where a case has floating-point tensors in differentiable
// positions, both sides also backpropagate sum(out · w) for one seeded random cotangent w and the
// input gradients are compared too.
import { type DType, manualSeed, Tensor, tensor, tidy } from "../../mod.ts";
import { isFloat } from "../../src/dtype.ts";
import { type Kwargs, type OpRow, OPS, PY_HELPERS, snake, type Val } from "./op_table.ts";
import { assertClose, type RefCase, refTensor, type RefValue, type Tolerance, torchRef } from "./torch_ref.ts";

/** With `scaled`, atol also gets rtol × the largest |reference|: for results that sum cancelling terms. */
export type Tol = Tolerance & { scaled?: boolean };
export const EXACT: Tol = { rtol: 0, atol: 0 };

/** A dtype as an argument: the string in mdm, `torch.<dtype>` in PyTorch. */
export class DTypeArg {
  constructor(readonly dtype: DType) {}
}
export const dt = (d: DType): DTypeArg => new DTypeArg(d);

type HostArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
export type Arg =
  | Tensor
  | number
  | bigint
  | boolean
  | string
  | null
  | undefined
  | DTypeArg
  | HostArray
  | Call
  | readonly Arg[];

/** An op applied to arguments; an argument may itself be a call (evaluated first, on both sides). */
export interface Call {
  op: string;
  args: readonly Arg[];
  /** Options, named as mdm names them; PyTorch gets them as snake_case keyword arguments. */
  kwargs?: Record<string, Arg>;
}

/** A nested call, for an argument that is itself an op's result. */
export const call = (op: string, ...args: Arg[]): Call => ({ op, args });

/**
 * What a storage-sharing probe writes after the op: the base (the first tensor argument) or the
 * result (its second piece when it is a list); the result, resp. the base, is then compared.
 */
export type Probe = "base written after" | "result written after";

export interface OpCase extends Call {
  /** Tolerance for floating-point results and gradients; integer and bool results must match exactly. */
  tol?: Tol;
  /** Opts a case out of the gradient check (the op table opts out whole ops). */
  grad?: false;
  /** Seeds the global generator on both sides before the call (dropout). */
  seed?: number;
  /** Compare values only, where PyTorch's dtype differs by design. */
  checkDtype?: false;
  probe?: Probe;
}

interface Prepared {
  name: string;
  c: OpCase;
  ref: RefCase;
  /** Differentiable inputs, in the order PyTorch returns their gradients, with where they sit. */
  leaves: [Tensor, string][];
  base?: Tensor;
}

const HOST_DTYPE: [new (n: number) => HostArray, DType][] = [
  [Float32Array, "float32"],
  [Float64Array, "float64"],
  [Int32Array, "int32"],
  [BigInt64Array, "int64"],
  [Uint8Array, "uint8"],
];

function isCall(a: Arg): a is Call {
  return typeof a === "object" && a !== null && "op" in a && "args" in a;
}

function row(op: string): OpRow {
  const r = OPS[op];
  if (!r) throw new Error(`op harness: no row for ${JSON.stringify(op)} in tests/helpers/op_table.ts`);
  return r;
}

function pyScalar(v: number | bigint | boolean | string | null | undefined): string {
  if (v === null || v === undefined) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "float('nan')";
    if (!Number.isFinite(v)) return v > 0 ? "float('inf')" : "float('-inf')";
  }
  // Integral numbers become Python ints, as mdm passes them.
  return String(v);
}

/** The Python source of an argument; tensors are named by `names`. */
function py(a: Arg, names: Map<Tensor, string>): string {
  if (a instanceof Tensor) return names.get(a)!;
  if (a instanceof DTypeArg) return `torch.${a.dtype}`;
  if (ArrayBuffer.isView(a)) {
    const dtype = HOST_DTYPE.find(([type]) => a instanceof type)![1];
    return `torch.tensor([${Array.from(a as ArrayLike<number>, pyScalar).join(", ")}], dtype=torch.${dtype})`;
  }
  if (Array.isArray(a)) return `[${a.map((x) => py(x, names)).join(", ")}]`;
  if (isCall(a)) {
    const args = a.args.map((x) => py(x, names));
    const kwargs = Object.entries(a.kwargs ?? {}).map(([k, v]) => `${snake(k)}=${py(v, names)}`);
    return `(${row(a.op).torch})(${[...args, ...kwargs].join(", ")})`;
  }
  return pyScalar(a as number);
}

/** Names every tensor (once, however often it appears) and collects the differentiable ones. */
function walk(a: Arg, where: string, diff: boolean, names: Map<Tensor, string>, leaves: Map<Tensor, string>) {
  if (a instanceof Tensor) {
    if (!names.has(a)) names.set(a, `t${names.size}`);
    if (diff && isFloat(a.dtype) && !leaves.has(a)) leaves.set(a, where);
  } else if (Array.isArray(a)) {
    a.forEach((x, i) => walk(x, `${where}[${i}]`, diff, names, leaves));
  } else if (isCall(a)) {
    const r = row(a.op);
    const d = (k: number | string) => r.grad !== false && (r.diff?.includes(k) ?? true);
    const at = where ? `${where} → ${a.op}` : a.op;
    a.args.forEach((x, i) => walk(x, `${at} args[${i}]`, d(i), names, leaves));
    for (const [k, x] of Object.entries(a.kwargs ?? {})) walk(x, `${at} ${k}`, d(k), names, leaves);
  }
}

function seedOf(name: string): number {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return h % 1_000_000;
}

function prepare(name: string, c: OpCase): Prepared {
  const names = new Map<Tensor, string>();
  const found = new Map<Tensor, string>();
  walk(c, "", true, names, found);
  const leaves = c.grad === false || c.probe ? [] : [...found];
  const expr = py(c, names);
  const base = c.probe ? names.keys().next().value : undefined;
  let code: string;
  if (c.probe === "base written after") {
    code = `_v = ${expr}\n${names.get(base!)}.add_(100)\nresult = _v`;
  } else if (c.probe === "result written after") {
    code = `_v = ${expr}\n(_v[1] if isinstance(_v, (list, tuple)) else _v).mul_(-1)\nresult = ${names.get(base!)}`;
  } else if (leaves.length) {
    code = `result = _grads(${expr}, [${leaves.map(([t]) => names.get(t)).join(", ")}], g)`;
  } else {
    code = `result = ${expr}`;
  }
  const helpers = Object.entries(PY_HELPERS).filter(([name]) => code.includes(name)).map(([, def]) => def);
  const ref: RefCase = {
    code: [...helpers, code].join("\n"),
    inputs: Object.fromEntries([...names].map(([t, n]) => [n, t])),
    grad: leaves.map(([t]) => names.get(t)!),
    seed: c.seed ?? seedOf(name),
  };
  return { name, c, ref, leaves, base };
}

function evaluate(a: Arg, env: Map<Tensor, Tensor>): Val {
  if (a instanceof Tensor) return env.get(a) ?? a;
  if (a instanceof DTypeArg) return a.dtype;
  if (ArrayBuffer.isView(a)) return a;
  if (Array.isArray(a)) return a.map((x) => evaluate(x, env));
  if (isCall(a)) {
    const args = a.args.map((x) => evaluate(x, env));
    const kw: Kwargs | undefined = a.kwargs &&
      Object.fromEntries(Object.entries(a.kwargs).map(([k, x]) => [k, evaluate(x, env)]));
    return row(a.op).mdm(args, kw);
  }
  return a;
}

function asList(out: Val, what: string): Tensor[] {
  if (out instanceof Tensor) return [out];
  if (Array.isArray(out) && out.every((t) => t instanceof Tensor)) return out;
  throw new Error(`${what}: mdm returned ${String(out)}, not a tensor or a list of tensors`);
}

function refList(ref: RefValue | undefined, n: number, what: string): RefValue[] {
  if (ref !== null && typeof ref === "object" && "error" in ref) throw new Error(String(ref.error));
  if (!Array.isArray(ref) || ref.length !== n) {
    throw new Error(`${what}: PyTorch returned ${JSON.stringify(ref)?.slice(0, 200)}, not ${n} values`);
  }
  return ref;
}

/** Checks every case of a file against PyTorch, in one Python process. */
export class OpSuite {
  #cases: Prepared[] = [];
  #refs?: Promise<Record<string, RefValue>>;

  /** `defaults`: tolerance per floating-point dtype, for cases that state none. */
  constructor(private readonly defaults: Partial<Record<DType, Tol>> = {}) {}

  /** Registers a group of cases as one test with a step per case. */
  test(group: string, cases: Record<string, OpCase>): void {
    const prepared = Object.entries(cases).map(([name, c]) => prepare(`${group}/${name}`, c));
    this.#cases.push(...prepared);
    Deno.test(group, async (t) => {
      const refs = await this.#allRefs();
      for (const p of prepared) {
        await t.step(p.name.slice(group.length + 1), () => tidy(() => this.#run(p, refs[p.name])));
      }
    });
  }

  #allRefs(): Promise<Record<string, RefValue>> {
    this.#refs ??= torchRef(Object.fromEntries(this.#cases.map((p) => [p.name, p.ref])));
    return this.#refs;
  }

  #close(t: Tensor, ref: RefValue, c: OpCase, tol: Tol | undefined, what: string): void {
    if (!isFloat(t.dtype)) return assertClose(t, ref, { ...EXACT, checkDtype: c.checkDtype }, what);
    const tl = tol ?? this.defaults[t.dtype];
    if (!tl) throw new Error(`${what}: no tolerance for ${t.dtype} results`);
    let atol = tl.atol ?? 0;
    if (tl.scaled) {
      let m = 0;
      for (const x of refTensor(ref, what).data) m = Math.max(m, Math.abs(Number(x)));
      atol += (tl.rtol ?? 0) * m;
    }
    assertClose(t, ref, { rtol: tl.rtol ?? 0, atol, checkDtype: c.checkDtype }, what);
  }

  #compare(out: Val, ref: RefValue, c: OpCase, what: string): void {
    if (out instanceof Tensor) return this.#close(out, ref, c, c.tol, what);
    const outs = asList(out, what);
    refList(ref, outs.length, what).forEach((r, i) => this.#close(outs[i], r, c, c.tol, `${what}[${i}]`));
  }

  #call(p: Prepared, env: Map<Tensor, Tensor>): Val {
    if (p.c.seed !== undefined) manualSeed(p.c.seed);
    return evaluate(p.c, env);
  }

  #run(p: Prepared, ref: RefValue): void {
    const { c } = p;
    if (c.probe) {
      const b = p.base!.clone();
      const v = this.#call(p, new Map([[p.base!, b]]));
      if (c.probe === "base written after") {
        b.add_(100);
        return this.#compare(v, ref, c, c.op);
      }
      (v instanceof Tensor ? v : asList(v, c.op)[1]).mul_(-1);
      return this.#compare(b, ref, c, c.op);
    }
    if (!p.leaves.length) return this.#compare(this.#call(p, new Map()), ref, c, c.op);

    const [refOut, ws, grads] = refList(ref, 3, c.op);
    this.#compare(this.#call(p, new Map()), refOut, c, c.op);
    // Fresh leaves, so that no gradient accumulates across cases.
    const env = new Map(p.leaves.map(([t]) => [t, t.detach().clone().requiresGrad_()]));
    const outs = asList(this.#call(p, env), c.op).filter((t) => isFloat(t.dtype));
    const cotangents = refList(ws, outs.length, `${c.op} cotangents`);
    const parts = outs.flatMap((o, i) => {
      if (!o.requiresGrad) return [];
      // Float32 values whatever the output's dtype (PyTorch draws them in float32 too).
      const w = refTensor(cotangents[i]);
      return [
        o.float().mul(tensor(w.data as Float32Array, { dtype: "float32", shape: w.shape, device: o.device })).sum(),
      ];
    });
    if (grads === null) {
      if (parts.length) throw new Error(`${c.op}: mdm's result requires grad, PyTorch's does not`);
      return;
    }
    if (!parts.length) throw new Error(`${c.op}: PyTorch's result requires grad, mdm's does not`);
    parts.reduce((s, x) => s.add(x)).backward();
    refList(grads, p.leaves.length, `${c.op} gradients`).forEach((g, i) => {
      const [t, where] = p.leaves[i];
      const ours = env.get(t)!.grad;
      const what = `gradient of ${where}`;
      if (ours === null || g === null) {
        if (ours !== g) throw new Error(`${what}: mdm's is ${ours && "a tensor"}, PyTorch's is ${g && "a tensor"}`);
        return;
      }
      this.#close(ours, g, c, c.tol, what);
    });
  }
}
