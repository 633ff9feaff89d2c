import { ByolError } from '../errors.js';

/**
 * NumPy's .npy format, version 1.0, for float32 arrays: the magic, a little-endian header length, a Python-dict
 * header padded so the data starts 64-byte aligned, then the values in C order. `numpy.load` reads it.
 */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Uint8Array {
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== data.length) throw new RangeError(`encodeNpy: shape [${shape}] holds ${size} values, the data ${data.length}`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const prefix = 10; // magic (6) + version (2) + header length (2)
  header += ' '.repeat((64 - ((prefix + header.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(prefix + header.length + data.byteLength);
  out.set([0x93, ...Array.from('NUMPY', (c) => c.charCodeAt(0)), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[prefix + i] = header.charCodeAt(i);
  const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Float32Array is platform-endian; .npy says little-endian ('<f4'), which every platform Node runs on is.
  out.set(body, prefix + header.length);
  return out;
}

/** A float32 .npy of shape [N, D] (what `byol embed` writes). Errors name `path`. */
export function decodeNpy(bytes: Uint8Array, path: string): { data: Float32Array; rows: number; dim: number } {
  const bad = (why: string) => new ByolError('INVALID_DATA', `${path}: ${why}`, path);
  if (bytes.length < 10 || bytes[0] !== 0x93 || Buffer.from(bytes.subarray(1, 6)).toString('latin1') !== 'NUMPY') throw bad('not a .npy file');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = (major === 1 ? 10 : 12) + hlen;
  const header = Buffer.from(bytes.subarray(major === 1 ? 10 : 12, start)).toString('latin1');
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) throw bad(`holds ${/'descr':\s*'([^']*)'/.exec(header)?.[1] ?? 'unknown'} values; byol reads little-endian float32 in C order`);
  const shape = /'shape':\s*\((\d+),\s*(\d+),?\s*\)/.exec(header);
  if (!shape) throw bad('not a 2-D array [N, D] of embeddings');
  const rows = Number(shape[1]);
  const dim = Number(shape[2]);
  if (bytes.length !== start + rows * dim * 4) throw bad(`${bytes.length - start} bytes of data for ${rows} × ${dim} float32`);
  return { data: new Float32Array(bytes.slice(start).buffer, 0, rows * dim), rows, dim };
}
