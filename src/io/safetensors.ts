/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the raw little-endian data. No code, no pickle: what PyTorch users load with
 * `safetensors.torch.load_file`. Browser-safe.
 */
import { ByolError } from '../errors.js';

export interface NamedArray {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Encodes float32 tensors (in the given order) with optional string metadata. */
export function encodeSafetensors(tensors: ReadonlyMap<string, NamedArray>, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) throw new ByolError('INVALID_INPUT', `safetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`, name);
    header[name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + 4 * size] };
    offset += 4 * size;
  }
  let json = JSON.stringify(header);
  // The data starts 8-byte aligned (the format pads the header with spaces).
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** Decodes a safetensors file's F32 tensors (and F16/BF16/F64, converted); errors name `file`. */
export function decodeSafetensors(bytes: Uint8Array, file: string): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  if (bytes.length < 8) throw fail('too short for a safetensors file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > bytes.length - 8) throw fail('a header longer than the file (not safetensors, or truncated)');
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as typeof header;
  } catch {
    throw fail('its header is not JSON');
  }
  const data = bytes.subarray(8 + n);
  const tensors = new Map<string, NamedArray>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [begin, end] } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!(end <= data.length && begin <= end)) throw fail(`${name} lies past the end of the data (truncated?)`);
    const raw = new DataView(data.buffer, data.byteOffset + begin, end - begin);
    const count = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(count);
    const width = { F32: 4, F64: 8, F16: 2, BF16: 2 }[dtype];
    if (!width) throw fail(`${name} has dtype ${dtype}; only floating-point tensors are read`);
    if (width * count !== end - begin) throw fail(`${name}: ${end - begin} bytes for shape [${shape}] of ${dtype}`);
    for (let i = 0; i < count; i++) {
      if (dtype === 'F32') out[i] = raw.getFloat32(4 * i, true);
      else if (dtype === 'F64') out[i] = raw.getFloat64(8 * i, true);
      else if (dtype === 'BF16') out[i] = new Float32Array(new Uint32Array([raw.getUint16(2 * i, true) << 16]).buffer)[0]!;
      else {
        const h = raw.getUint16(2 * i, true);
        const e = (h >> 10) & 0x1f;
        const f = h & 0x3ff;
        const s = h & 0x8000 ? -1 : 1;
        out[i] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
      }
    }
    tensors.set(name, { shape, data: out });
  }
  return { tensors, metadata };
}
