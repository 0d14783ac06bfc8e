// Argument checks and the reporting of native failures, shared by the tensor layer's modules
// (tensor, create, functional, random, optim, runtime, io/raw): every check names what it checks.
import { takeError } from "../ffi/lib.ts";
import { TorchError } from "./error.ts";

/** A tensor input's shape, or null for a disposed one (read structurally: this file sits below Tensor). */
function shapeOf(x: unknown): readonly number[] | null | undefined {
  if (x === null || typeof x !== "object" || !("disposed" in x) || !("shape" in x)) return undefined;
  return (x as { disposed: boolean }).disposed ? null : (x as { shape: readonly number[] }).shape;
}

/** Throws the failure recorded for `op`, naming the shapes of its tensor inputs. */
export function fail(op: string, ...inputs: unknown[]): never {
  const message = takeError() ?? "the native call returned no result";
  const shapes = inputs.map(shapeOf).filter((s): s is readonly number[] | null => s !== undefined);
  throw new TorchError(message, op, shapes);
}

/** Throws if a status-returning call failed. */
export function check(rc: number, op: string, ...inputs: unknown[]): void {
  if (rc !== 0) fail(op, ...inputs);
}

/** Validates an integer argument, naming it in the error. */
export function int(v: number, what: string): number {
  if (!Number.isInteger(v)) throw new TypeError(`${what} must be an integer, got ${v}`);
  return v;
}

/** Validates a list of integers (a shape, a list of dims), naming it in the error. */
export function intList(v: readonly number[], what: string): readonly number[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of integers, got ${String(v)}`);
  for (const x of v) {
    if (!Number.isInteger(x) || Math.abs(x) >= 2 ** 31) {
      throw new TypeError(`${what} must hold integers below 2^31, got [${v.join(", ")}]`);
    }
  }
  return v;
}
