// A restricted unpickler: it runs the pickle opcodes that plain data needs and never runs code.
// A global (a class or function named in the stream) is only a name here; calling one asks the
// caller's `call` hook, and what the hook does not know becomes an opaque PyObject. So a hostile
// checkpoint can at worst fail to parse, unlike Python's pickle.load, which executes what it names.
//
// Tuples come back as frozen arrays, lists as arrays, dicts (and OrderedDicts, via the hook) as Maps.
//
// Every length is checked against the data before use, and the work a stream can ask for is
// bounded: `maxEntries` values (each opcode that makes or pushes a value counts one, so a stream
// of EMPTY_DICT opcodes cannot fill memory with Maps) and integers of at most `maxIntegerDigits`
// decimal digits, parsed in linear time. Nothing here recurses, so deeply nested or
// self-referencing containers are built without touching the call stack; whoever walks them must
// bound that walk (see pt.ts).
import { checkLimit, type Limits, resolveLimits } from "./limits.ts";

/** A class or function the stream names (GLOBAL), not resolved to anything. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An object of a type the caller does not reconstruct, kept only so that parsing can go on. */
export class PyObject {
  state: unknown = undefined;
  constructor(readonly type: string) {}
}

export interface UnpickleHooks {
  /** The value of calling `fn(...args)` (REDUCE, NEWOBJ); undefined makes an opaque PyObject. */
  call(fn: PyGlobal, args: readonly unknown[]): unknown;
  /** The object a persistent id (BINPERSID) stands for. */
  persistentLoad(pid: unknown): unknown;
}

const MARK = Symbol("mark");
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Parses a pickle (protocols 2 to 5, binary opcodes) into JavaScript values. Throws an Error
 * starting "pickle:" for a malformed stream, a LimitError for one over `opts.maxEntries` (default
 * 1 000 000) or `opts.maxIntegerDigits` (default 4300).
 */
export function unpickle(bytes: Uint8Array, hooks: UnpickleHooks, opts: Limits = {}): unknown {
  const limits = resolveLimits(opts);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let opAt = 0;
  let values = 0;
  const push = (v: unknown) => {
    if (++values > limits.maxEntries) checkLimit(limits, "maxEntries", values, "the values of the pickle");
    stack.push(v);
  };

  const fail = (message: string): never => {
    throw new Error(`pickle: ${message} (opcode at byte ${opAt})`);
  };
  const need = (n: number) => {
    if (pos + n > bytes.length) fail(`data ends after ${bytes.length} bytes, ${n} more needed`);
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), pos += 2, view.getUint16(pos - 2, true));
  const u32 = () => (need(4), pos += 4, view.getUint32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`length ${v} exceeds the data`);
    return Number(v);
  };
  const take = (n: number) => (need(n), pos += n, bytes.subarray(pos - n, pos));
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const text = (n: number) => {
    const b = take(n);
    try {
      return utf8.decode(b);
    } catch {
      return fail(`a string of ${n} bytes that is not valid UTF-8`);
    }
  };
  const latin1 = (n: number) => {
    let s = "";
    for (const b of take(n)) s += String.fromCharCode(b);
    return s;
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("unterminated line");
    const b = bytes.subarray(pos, end);
    pos = end + 1;
    try {
      return utf8.decode(b);
    } catch {
      return fail("a line that is not valid UTF-8");
    }
  };
  // Little-endian two's complement of any length (LONG1, LONG4): a number when exact, else a bigint.
  // Built from hexadecimal text, which BigInt parses in linear time (shifting in byte by byte is
  // quadratic: a 400 KB integer took minutes).
  const long = (n: number) => {
    // n bytes hold up to n * 8 * log10(2) decimal digits.
    checkLimit(limits, "maxIntegerDigits", Math.ceil(n * 8 * Math.log10(2)), `an integer of ${n} bytes`);
    const b = take(n);
    if (n === 0) return 0;
    let hex = "";
    for (let i = n - 1; i >= 0; i--) hex += HEX[b[i]];
    let v = BigInt(`0x${hex}`);
    if (b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  const pop = () => {
    if (stack.length === 0) fail("stack underflow");
    const v = stack.pop();
    if (v === MARK) fail("unexpected mark");
    return v;
  };
  const top = () => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail("stack underflow");
    return stack[stack.length - 1];
  };
  // The items above the topmost mark, which is removed with them.
  const popMark = () => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail("no mark on the stack");
    const items = stack.splice(at);
    items.shift();
    return items;
  };
  const call = (fn: unknown, args: unknown) => {
    if (!(fn instanceof PyGlobal)) fail("call of something that is not a global");
    if (!Array.isArray(args)) fail("call arguments are not a tuple");
    const g = fn as PyGlobal;
    const v = hooks.call(g, args as unknown[]);
    return v === undefined ? new PyObject(g.qualified) : v;
  };
  const isList = (x: unknown): x is unknown[] => Array.isArray(x) && !Object.isFrozen(x);
  const append = (target: unknown, items: unknown[]) => {
    // One by one: spreading a long list into push() overflows the call stack.
    if (isList(target)) { for (const x of items) target.push(x); }
    else if (!(target instanceof PyObject)) fail("append to something that is not a list");
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (items.length % 2) fail("odd number of dict items");
    if (target instanceof Map) {
      for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
    } else if (!(target instanceof PyObject)) fail("setitem on something that is not a dict");
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("pickle protocol above 5");
        break;
      case 0x95: // FRAME: a length hint only
        take(8);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`stack holds ${stack.length} values at the end, not 1`);
        return pop();
      case 0x28: // MARK
        push(MARK);
        break;
      case 0x30: // POP
        stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        need(4);
        push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(long(u8()));
        break;
      case 0x8b: // LONG4
        push(long(u32()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        push(text(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str, read as Latin-1)
        push(latin1(u32()));
        break;
      case 0x55: // SHORT_BINSTRING
        push(latin1(u8()));
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        push(Object.freeze([]));
        break;
      case 0x74: // TUPLE
        push(Object.freeze(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: { // TUPLE3
        const items = Array.from({ length: op - 0x84 }, pop).reverse();
        push(Object.freeze(items));
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: { // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        push(new PyGlobal(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        push(new PyGlobal(module as string, name as string));
        break;
      }
      case 0x52: // REDUCE
      case 0x81: { // NEWOBJ
        const args = pop(), fn = pop();
        push(call(fn, args));
        break;
      }
      case 0x62: { // BUILD: set an object's state. Dicts' state (a state dict's _metadata) is dropped.
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        break;
      }
      case 0x51: // BINPERSID
        push(hooks.persistentLoad(pop()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`memo ${k} was never stored`);
        push(memo.get(k));
        break;
      }
      default:
        fail(`unsupported opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}
