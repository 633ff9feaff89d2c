import { ByolError } from '../errors.js';

/** An IDX array (LeCun's MNIST format): unsigned bytes with their dimensions. */
export interface IdxArray {
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/**
 * Parses an uncompressed IDX file of unsigned bytes (type 0x08): magic 0x0000 08 D, then D big-endian uint32
 * dimensions, then the data. `name` is used in error messages (usually the file path).
 */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  const fail = (what: string) => new ByolError('INVALID_INPUT', `${name}: ${what}`, name);
  if (bytes.length < 4) throw fail(`too short for an IDX header (${bytes.length} bytes)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) throw fail(`bad IDX magic number 0x${hex(bytes, 4)} (expected 0x000008NN)`);
  if (bytes[2] !== 0x08) throw fail(`IDX data type 0x${bytes[2]!.toString(16)} is not unsigned byte (0x08)`);
  const rank = bytes[3]!;
  if (rank < 1 || rank > 4) throw fail(`IDX rank ${rank} is not in 1..4`);
  const headerLength = 4 + 4 * rank;
  if (bytes.length < headerLength) throw fail(`truncated IDX header: ${bytes.length} of ${headerLength} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const size = shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== headerLength + size) {
    throw fail(`IDX dimensions [${shape}] need ${size} data bytes; the file has ${bytes.length - headerLength}`);
  }
  return { shape, data: bytes.subarray(headerLength) };
}

function hex(bytes: Uint8Array, n: number): string {
  return Array.from(bytes.subarray(0, n), (b) => b.toString(16).padStart(2, '0')).join('');
}
