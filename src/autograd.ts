// Grad-mode scopes.
import { sym } from "../ffi/lib.ts";

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = sym.mdm_set_grad_enabled(enabled ? 1 : 0);
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new TypeError("grad-mode scopes take synchronous functions; the mode would leak across await");
    }
    return result;
  } finally {
    sym.mdm_set_grad_enabled(previous);
  }
}

/** Runs `fn` without recording operations for autograd (inference, EMA updates, metrics). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with gradient recording on, even inside `noGrad`. */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

/** Whether operations are recorded for autograd right now (false inside `noGrad`). */
export function isGradEnabled(): boolean {
  const previous = sym.mdm_set_grad_enabled(1);
  sym.mdm_set_grad_enabled(previous);
  return previous === 1;
}
