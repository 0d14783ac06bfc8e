// Memory scopes: `tidy(fn)` frees every tensor made inside `fn` except what it returns or keeps.

/** Anything tidy can free: tensors, and objects that own tensors. */
export interface Scoped {
  /** The scope that will free the resource, or null; only `tidy` and `keep` set it. */
  [SCOPE]: Scope | null;
  /** Frees the resource (safe to call twice). */
  dispose(): void;
  /** Called when the resource is left outside every scope: its owner must free it now. */
  unscoped(): void;
}

/** The key of `Scoped`'s scope mark: a symbol, so it cannot clash with a resource's own fields. */
export const SCOPE: unique symbol = Symbol("mdm.scope");

/**
 * The resources made while a scope was open. Leaving a scope only clears the resource's mark, so
 * that entering and leaving stay O(1); the list is swept once, when the scope closes.
 */
export interface Scope {
  /** Resources created while the scope was open; those still marked with it are freed when it closes. */
  items: Scoped[];
}

const stack: Scope[] = [];

/** Registers a new resource with the innermost open scope, if any. */
export function enter(r: Scoped): void {
  const s = stack.length ? stack[stack.length - 1] : null;
  r[SCOPE] = s;
  if (s) s.items.push(r);
  else r.unscoped();
}

/** Removes a resource from the scope that would free it. */
export function leave(r: Scoped): void {
  r[SCOPE] = null;
}

/** Exempts a tensor from every enclosing `tidy`; free it yourself (or let GC do it). */
export function keep<T extends Scoped>(r: T): T {
  if (r[SCOPE] === null) return r;
  leave(r);
  r.unscoped();
  return r;
}

function collect(value: unknown, found: Set<Scoped>, seen: Set<unknown>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if (SCOPE in value) {
    found.add(value as Scoped);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, found, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, found, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, found, seen);
  }
}

function sweep(scope: Scope, survivors: Set<Scoped> | null): void {
  for (const r of scope.items) {
    if (r[SCOPE] !== scope || survivors?.has(r)) continue;
    r[SCOPE] = null;
    r.dispose();
  }
}

/**
 * Runs `fn` and frees every tensor created during it, except the tensors reachable from its
 * result (through arrays, maps and plain objects) and those passed to `keep`. Returned tensors
 * belong to the enclosing scope afterwards. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { items: [] };
  stack.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new TypeError("tidy(fn): fn returned a Promise; tidy only scopes synchronous code");
    }
  } catch (e) {
    stack.pop();
    sweep(scope, null);
    throw e;
  }
  stack.pop();
  const survivors = new Set<Scoped>();
  collect(result, survivors, new Set());
  sweep(scope, survivors);
  for (const r of survivors) {
    if (r[SCOPE] === scope) enter(r);
  }
  return result;
}
