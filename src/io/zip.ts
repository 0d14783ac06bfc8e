// A reader of the zip archives torch.save writes: stored (uncompressed) entries, zip64 when large.
// It reads the central directory and then only the entries asked for, so a large checkpoint is
// never in memory twice. Every offset and size is checked against the file before it is used, the
// number of entries against `maxEntries`, and every entry read against its CRC-32 (as torch.load
// does), so a damaged archive is an error rather than tensors with wrong values.
import { crc32 } from "node:zlib";
import { checkLimit, DEFAULT_LIMITS, type Limits, show } from "./limits.ts";
import type { ReadableFile } from "./fs.ts";

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/** Where one entry's bytes lie in the file. */
interface ZipEntry {
  method: number;
  size: number;
  localHeader: number;
  crc: number;
}

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();

  /**
   * Reads the directory of `file` (`size` bytes); throws an Error saying what is wrong, a
   * LimitError for more than `limits.maxEntries` entries.
   */
  constructor(
    private readonly file: ReadableFile,
    private readonly size: number,
    limits: Required<Limits> = DEFAULT_LIMITS,
  ) {
    const { count, dirOffset, dirSize } = this.#endRecord();
    checkLimit(limits, "maxEntries", count, `an archive of ${count} entries`);
    const dir = this.#read(dirOffset, dirSize, "the central directory");
    const v = new DataView(dir.buffer);
    const names = new TextDecoder();
    let at = 0;
    for (let i = 0; i < count; i++) {
      if (at + 46 > dir.length || v.getUint32(at, true) !== CENTRAL) {
        throw new Error(`central directory entry ${i} is malformed`);
      }
      const method = v.getUint16(at + 10, true);
      const crc = v.getUint32(at + 16, true);
      let compressed = v.getUint32(at + 20, true), uncompressed = v.getUint32(at + 24, true);
      const nameLen = v.getUint16(at + 28, true), extraLen = v.getUint16(at + 30, true);
      const commentLen = v.getUint16(at + 32, true);
      let localHeader = v.getUint32(at + 42, true);
      const end = at + 46 + nameLen + extraLen + commentLen;
      if (end > dir.length) throw new Error(`central directory entry ${i} runs past the directory`);
      const name = names.decode(dir.subarray(at + 46, at + 46 + nameLen));
      // Values that do not fit 32 bits are 0xFFFFFFFF here and 64-bit in the zip64 extra field,
      // present in this order for the fields that need it: uncompressed, compressed, local offset.
      const MAX = 0xffffffff;
      if (compressed === MAX || uncompressed === MAX || localHeader === MAX) {
        const z = this.#zip64Extra(v, at + 46 + nameLen, extraLen);
        let k = 0;
        const next = () => {
          if (k >= z.length) throw new Error(`entry ${name}: zip64 field is too short`);
          return z[k++];
        };
        if (uncompressed === MAX) uncompressed = next();
        if (compressed === MAX) compressed = next();
        if (localHeader === MAX) localHeader = next();
      }
      if (method === 0 && compressed !== uncompressed) {
        throw new Error(`entry ${name} is stored but its sizes differ (${compressed} and ${uncompressed})`);
      }
      // Two entries of one name would let the archive mean two things.
      if (this.entries.has(name)) throw new Error(`the archive holds two entries named ${show(name)}`);
      this.entries.set(name, { method, size: compressed, localHeader, crc });
      at = end;
    }
  }

  /** The bytes of an entry. */
  read(name: string): Uint8Array<ArrayBuffer> {
    const e = this.entries.get(name);
    const label = show(name, 200);
    if (!e) throw new Error(`the archive has no entry ${label}`);
    if (e.method !== 0) throw new Error(`entry ${label} is compressed (method ${e.method}); torch.save stores entries`);
    const local = this.#read(e.localHeader, 30, `the local header of ${label}`);
    const v = new DataView(local.buffer);
    if (v.getUint32(0, true) !== LOCAL) throw new Error(`entry ${label}: local header is malformed`);
    const start = e.localHeader + 30 + v.getUint16(26, true) + v.getUint16(28, true);
    const bytes = this.#read(start, e.size, `entry ${label}`);
    const crc = crc32(bytes);
    if (crc !== e.crc) {
      throw new Error(`entry ${label} fails its CRC-32 check (stored ${e.crc}, computed ${crc}): the file is damaged`);
    }
    return bytes;
  }

  #endRecord(): { count: number; dirOffset: number; dirSize: number } {
    if (this.size < 22) throw new Error(`the file has ${this.size} bytes, too few for a zip archive`);
    // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
    const tailStart = Math.max(0, this.size - 22 - 65535);
    const tail = this.#read(tailStart, this.size - tailStart, "the end of the file");
    const v = new DataView(tail.buffer);
    let p = tail.length - 22;
    while (p >= 0 && v.getUint32(p, true) !== EOCD) p--;
    if (p < 0) throw new Error("no end-of-central-directory record: not a zip archive, or a truncated one");
    let count = v.getUint16(p + 10, true);
    let dirSize = v.getUint32(p + 12, true);
    let dirOffset = v.getUint32(p + 16, true);
    if (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) {
      if (p < 20 || v.getUint32(p - 20, true) !== ZIP64_LOCATOR) throw new Error("zip64 locator is missing");
      const recordAt = this.#safe(v.getBigUint64(p - 20 + 8, true), "zip64 record offset");
      const r = new DataView(this.#read(recordAt, 56, "the zip64 end record").buffer);
      if (r.getUint32(0, true) !== ZIP64_EOCD) throw new Error("zip64 end record is malformed");
      count = this.#safe(r.getBigUint64(32, true), "entry count");
      dirSize = this.#safe(r.getBigUint64(40, true), "directory size");
      dirOffset = this.#safe(r.getBigUint64(48, true), "directory offset");
    }
    return { count, dirOffset, dirSize };
  }

  #zip64Extra(v: DataView, start: number, length: number): number[] {
    for (let at = start; at + 4 <= start + length;) {
      const id = v.getUint16(at, true), len = v.getUint16(at + 2, true);
      if (at + 4 + len > start + length) break;
      if (id === 0x0001) {
        const out: number[] = [];
        for (let k = 0; k + 8 <= len; k += 8) out.push(this.#safe(v.getBigUint64(at + 4 + k, true), "zip64 field"));
        return out;
      }
      at += 4 + len;
    }
    throw new Error("an entry needs a zip64 field and has none");
  }

  #safe(x: bigint, what: string): number {
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${what} ${x} is out of range`);
    return Number(x);
  }

  #read(position: number, length: number, what: string): Uint8Array<ArrayBuffer> {
    if (position < 0 || length < 0 || position + length > this.size) {
      throw new Error(`${what} (${length} bytes at ${position}) lies beyond the end of the file (${this.size} bytes)`);
    }
    const out = new Uint8Array(length);
    if (this.file.readAt(out, position) < length) throw new Error(`${what}: the file ended early`);
    return out;
  }
}
