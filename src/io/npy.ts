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
