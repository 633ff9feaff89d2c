/**
 * Reads PyTorch's `torch.save` files (`.pth`, `.pt`, Lightning's `.ckpt`): a ZIP archive holding `data.pkl` and one
 * file per tensor storage. The pickle is read by our data-only reader (pickle.ts) with an allow-list of the globals
 * these files need — the tensor rebuild functions, the storage types, OrderedDict, and a few plain containers — so
 * nothing in the file runs. Tensors come back as {@link TorchTensor} (float32 values, or int64 as numbers).
 */
import { readFile, stat } from 'node:fs/promises';
import { ByolError } from '../errors.js';
import { PyGlobal, PyTuple, unpickle } from './pickle.js';
import { zipEntries, zipRead } from './zip.js';

/** A tensor from a PyTorch file, in row-major order. */
export class TorchTensor {
  constructor(
    readonly shape: readonly number[],
    /** The values as float32 (integer tensors too: batch-norm's num_batches_tracked). */
    readonly data: Float32Array,
    /** PyTorch's dtype name: float32, float16, bfloat16, float64, int64, … */
    readonly dtype: string,
  ) {}
}

interface Storage {
  readonly dtype: string;
  readonly itemSize: number;
  readonly bytes: Buffer;
}

const STORAGE_DTYPES: Readonly<Record<string, [string, number]>> = {
  FloatStorage: ['float32', 4],
  DoubleStorage: ['float64', 8],
  HalfStorage: ['float16', 2],
  BFloat16Storage: ['bfloat16', 2],
  LongStorage: ['int64', 8],
  IntStorage: ['int32', 4],
  ShortStorage: ['int16', 2],
  CharStorage: ['int8', 1],
  ByteStorage: ['uint8', 1],
  BoolStorage: ['bool', 1],
};

/** Largest file read whole (4 GiB: a ViT-L or a ResNet-200 fits; a full training state with optimizer may not). */
const MAX_BYTES = 4 * 2 ** 30;

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** The element at `i` of a storage, as a number. */
function reader(storage: Storage): (i: number) => number {
  const b = storage.bytes;
  switch (storage.dtype) {
    case 'float32':
      return (i) => b.readFloatLE(4 * i);
    case 'float64':
      return (i) => b.readDoubleLE(8 * i);
    case 'float16':
      return (i) => halfToFloat(b.readUInt16LE(2 * i));
    case 'bfloat16': {
      const tmp = new DataView(new ArrayBuffer(4));
      return (i) => (tmp.setUint32(0, b.readUInt16LE(2 * i) << 16), tmp.getFloat32(0));
    }
    case 'int64':
      return (i) => Number(b.readBigInt64LE(8 * i));
    case 'int32':
      return (i) => b.readInt32LE(4 * i);
    case 'int16':
      return (i) => b.readInt16LE(2 * i);
    case 'int8':
      return (i) => b.readInt8(i);
    default:
      return (i) => b[i]!;
  }
}

/**
 * An OmegaConf container or value node as a Lightning checkpoint's `hyper_parameters` keep them (solo-learn saves its
 * whole config so). Read as data: a node's state is its value (`_val`), a container's its content (`_content`); the
 * metadata (types, flags, the parent link) is ignored. {@link plainData} turns them into Maps, arrays and values.
 */
export class OmegaData {
  content: unknown = undefined;
  constructor(readonly kind: 'dict' | 'list' | 'value') {}
  setState(state: unknown): void {
    if (state instanceof Map) this.content = this.kind === 'value' ? state.get('_val') : state.get('_content');
  }
}

/** OmegaConf containers and nodes inside `v` as plain Maps, arrays and values (cycles cut). */
export function plainData(v: unknown, seen = new Set<unknown>()): unknown {
  if (v === null || typeof v !== 'object' || seen.has(v)) return v instanceof OmegaData ? null : v;
  seen.add(v);
  try {
    if (v instanceof OmegaData) return plainData(v.content, seen);
    if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, plainData(x, seen)]));
    if (Array.isArray(v)) return v.map((x) => plainData(x, seen));
    if (v instanceof PyTuple) return v.items.map((x) => plainData(x, seen));
    return v;
  } finally {
    seen.delete(v);
  }
}

/** The globals a PyTorch or Lightning checkpoint of model weights needs; each builds a plain value. */
function torchGlobals(file: string): Map<string, (args: unknown[]) => unknown> {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  const rebuild = (args: unknown[]): TorchTensor => {
    const [storage, offset, size, stride] = args as [Storage, number, PyTuple, PyTuple];
    if (!storage || !(storage.bytes instanceof Buffer)) throw fail('a tensor without its storage');
    const shape = size.items.map(Number);
    const strides = stride.items.map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    const get = reader(storage);
    const width = storage.itemSize;
    const out = new Float32Array(n);
    // Row-major walk over the shape, reading through the strides (usually contiguous).
    const index = new Array<number>(shape.length).fill(0);
    for (let i = 0; i < n; i++) {
      let at = Number(offset);
      for (let d = 0; d < shape.length; d++) at += index[d]! * strides[d]!;
      if ((at + 1) * width > storage.bytes.length) throw fail(`a tensor of shape [${shape}] reads past its storage (truncated file?)`);
      out[i] = get(at);
      for (let d = shape.length - 1; d >= 0; d--) {
        if (++index[d]! < shape[d]!) break;
        index[d] = 0;
      }
    }
    return new TorchTensor(shape, out, storage.dtype);
  };
  const dict = () => new Map();
  const g = new Map<string, (args: unknown[]) => unknown>([
    ['torch._utils._rebuild_tensor_v2', rebuild],
    ['torch._utils._rebuild_tensor', rebuild],
    ['torch._utils._rebuild_parameter', (a) => a[0]],
    ['torch._utils._rebuild_parameter_with_state', (a) => a[0]],
    ['collections.OrderedDict', dict],
    ['builtins.dict', dict],
    ['__builtin__.dict', dict],
    ['builtins.set', (a) => new Set(Array.isArray(a[0]) ? a[0] : [])],
    // Lightning's hyper-parameters container and argparse's namespace: plain attribute bags.
    ['pytorch_lightning.utilities.parsing.AttributeDict', dict],
    ['lightning.fabric.utilities.data.AttributeDict', dict],
    ['lightning_fabric.utilities.data.AttributeDict', dict],
    ['argparse.Namespace', dict],
    // OmegaConf (Lightning keeps a config's containers as they are): data, never code; see OmegaData.
    ['omegaconf.dictconfig.DictConfig', () => new OmegaData('dict')],
    ['omegaconf.listconfig.ListConfig', () => new OmegaData('list')],
    ...['AnyNode', 'StringNode', 'IntegerNode', 'FloatNode', 'BooleanNode', 'ValueNode', 'BytesNode', 'PathNode'].map((n) => [`omegaconf.nodes.${n}`, () => new OmegaData('value')] as [string, (args: unknown[]) => unknown]),
    ['omegaconf.base.ContainerMetadata', () => new OmegaData('value')],
    ['omegaconf.base.Metadata', () => new OmegaData('value')],
    ['typing.Any', () => 'typing.Any'],
    ['collections.defaultdict', dict],
    ['torch.torch_version.TorchVersion', (a) => String(a[0])],
    ['torch.device', (a) => String(a[0])],
  ]);
  for (const name of Object.keys(STORAGE_DTYPES)) g.set(`torch.${name}`, () => name);
  return g;
}

/**
 * Reads a `torch.save` file: the unpickled object (dicts as Maps, tensors as TorchTensor). Errors name the file and
 * the fault: not a ZIP (e.g. the legacy pre-1.6 format), truncated, or a global outside the allow-list.
 */
export async function readTorchFile(path: string): Promise<unknown> {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${path}: ${why}`, path);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    throw fail(`cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (size > MAX_BYTES) throw fail(`${size} bytes is over the ${MAX_BYTES} this reader takes`);
  const buf = await readFile(path);
  if (buf.length >= 2 && buf[0] === 0x80 && buf[1]! <= 5) {
    throw fail('a pickle of the legacy (before PyTorch 1.6) format, or a plain pickle; save it again with torch.save in PyTorch ≥ 1.6');
  }
  if (buf.readUInt32LE(0) !== 0x04034b50) throw fail('not a PyTorch file (torch.save writes a ZIP archive)');
  const entries = zipEntries(buf, path);
  const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw fail('a ZIP archive without data.pkl (not written by torch.save)');
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder && zipRead(buf, byteorder, path).toString('latin1').trim() !== 'little') throw fail('a big-endian PyTorch file');
  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: unknown): Storage => {
    if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage') throw fail('an unknown persistent id in its pickle');
    const [, type, key] = pid.items as [string, unknown, string];
    const typeName = type instanceof PyGlobal ? type.name : String(type);
    const known = STORAGE_DTYPES[typeName];
    if (!known) throw fail(`a tensor storage of type ${typeName}, which this reader does not know`);
    const cached = storages.get(key);
    if (cached) return cached;
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) throw fail(`the storage ${key} its pickle names is missing from the archive (truncated?)`);
    const s = { dtype: known[0], itemSize: known[1], bytes: zipRead(buf, entry, path) };
    storages.set(key, s);
    return s;
  };
  return unpickle(zipRead(buf, entries.get(pkl)!, path), { globals: torchGlobals(path), persistentLoad, file: path });
}

/** Every tensor of a nested checkpoint object, by dotted key (a state dict's own keys stay as they are). */
export function flattenTensors(obj: unknown, prefix = '', out = new Map<string, TorchTensor>()): Map<string, TorchTensor> {
  if (obj instanceof TorchTensor) out.set(prefix.replace(/\.$/, ''), obj);
  else if (obj instanceof Map) for (const [k, v] of obj) flattenTensors(v, `${prefix}${String(k)}.`, out);
  return out;
}
