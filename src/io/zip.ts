/**
 * A small ZIP reader for the archives PyTorch writes (`torch.save` since 1.6: stored entries, 64-byte aligned data):
 * the central directory, ZIP64 sizes, and entries that are stored or deflated. Reads a Buffer; names every fault.
 */
import { inflateRawSync } from 'node:zlib';
import { ByolError } from '../errors.js';

export interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeader: number;
}

const fail = (file: string, why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);

/** The entries of a ZIP archive, by name. */
export function zipEntries(buf: Buffer, file: string): Map<string, ZipEntry> {
  // The end-of-central-directory record: its signature within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65_557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw fail(file, 'not a ZIP archive (no end-of-central-directory record; truncated?)');
  let count = buf.readUInt16LE(eocd + 10);
  let offset = buf.readUInt32LE(eocd + 16);
  if (offset === 0xffffffff || count === 0xffff) {
    // ZIP64: the locator sits right before the end record.
    const locator = eocd - 20;
    if (locator < 0 || buf.readUInt32LE(locator) !== 0x07064b50) throw fail(file, 'a ZIP64 archive without its locator');
    const end64 = Number(buf.readBigUInt64LE(locator + 8));
    if (end64 + 56 > buf.length || buf.readUInt32LE(end64) !== 0x06064b50) throw fail(file, 'a damaged ZIP64 end record');
    count = Number(buf.readBigUInt64LE(end64 + 32));
    offset = Number(buf.readBigUInt64LE(end64 + 48));
  }
  const entries = new Map<string, ZipEntry>();
  for (let i = 0, at = offset; i < count; i++) {
    if (at + 46 > buf.length || buf.readUInt32LE(at) !== 0x02014b50) throw fail(file, `damaged central directory at entry ${i}`);
    const method = buf.readUInt16LE(at + 10);
    let compressedSize = buf.readUInt32LE(at + 20);
    let size = buf.readUInt32LE(at + 24);
    const nameLength = buf.readUInt16LE(at + 28);
    const extraLength = buf.readUInt16LE(at + 30);
    const commentLength = buf.readUInt16LE(at + 32);
    let localHeader = buf.readUInt32LE(at + 42);
    const name = buf.toString('utf8', at + 46, at + 46 + nameLength);
    // ZIP64 extra field: the 64-bit values of whichever fields are saturated, in this order.
    for (let e = at + 46 + nameLength; e + 4 <= at + 46 + nameLength + extraLength; ) {
      const id = buf.readUInt16LE(e);
      const len = buf.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let p = e + 4;
        if (size === 0xffffffff) (size = Number(buf.readBigUInt64LE(p))), (p += 8);
        if (compressedSize === 0xffffffff) (compressedSize = Number(buf.readBigUInt64LE(p))), (p += 8);
        if (localHeader === 0xffffffff) localHeader = Number(buf.readBigUInt64LE(p));
      }
      e += 4 + len;
    }
    entries.set(name, { name, method, compressedSize, size, localHeader });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The bytes of one entry (a view into `buf` when stored). */
export function zipRead(buf: Buffer, entry: ZipEntry, file: string): Buffer {
  const h = entry.localHeader;
  if (h + 30 > buf.length || buf.readUInt32LE(h) !== 0x04034b50) throw fail(file, `damaged local header of ${entry.name}`);
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  const end = start + entry.compressedSize;
  if (end > buf.length) throw fail(file, `${entry.name} is cut short (truncated archive)`);
  const data = buf.subarray(start, end);
  if (entry.method === 0) return data;
  if (entry.method === 8) {
    try {
      return inflateRawSync(data);
    } catch (e) {
      throw fail(file, `${entry.name}: cannot inflate (${(e as Error).message})`);
    }
  }
  throw fail(file, `${entry.name}: unsupported ZIP compression method ${entry.method}`);
}
