// Devices and their codes in the native shim (native/mdm.h: the CPU, or CUDA device k for k >= 0).
import { DEVICE } from "../ffi/codes.ts";

/** Where a tensor lives. `"cuda"` means CUDA device 0. */
export type Device = "cpu" | "cuda" | `cuda:${number}`;

export function deviceCode(d: Device): number {
  if (d === "cpu") return DEVICE.cpu;
  if (d === "cuda") return 0;
  const m = /^cuda:(\d+)$/.exec(d);
  if (!m) throw new TypeError(`unknown device ${JSON.stringify(d)}; expected "cpu", "cuda" or "cuda:N"`);
  return Number(m[1]);
}

export function deviceFromCode(c: number): Device {
  if (c === DEVICE.cpu) return "cpu";
  if (c >= 0) return `cuda:${c}`;
  throw new TypeError(`native library returned unknown device code ${c}`);
}

let fallback: Device = "cpu";

/** Where creation functions put tensors when no device is given ("cpu" unless changed). */
export function defaultDevice(): Device {
  return fallback;
}

/** Changes the device creation functions use by default, e.g. to run a whole program on CUDA. */
export function setDefaultDevice(d: Device): void {
  deviceCode(d);
  fallback = d;
}
