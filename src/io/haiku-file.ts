/**
 * Reads the official BYOL checkpoints (google-deepmind/deepmind-research, byol/utils/checkpointing.py): a pickle
 * (protocol 2, written with dill) of {experiment_state, step, rng}, where experiment_state is the experiment's
 * `_ByolExperimentState` (online_params, target_params, online_state, target_state, opt_state) and params and state
 * are Haiku's nested mappings — module name → parameter name → NumPy array. Read with our data-only pickle reader and
 * an allow-list of the NumPy, Haiku and experiment globals these files hold; nothing in the file runs. Node only.
 */
import { readFile, stat } from 'node:fs/promises';
import { ByolError } from '../errors.js';
import { PyTuple, unpickle, type Buildable } from './pickle.js';

/** A NumPy array from a pickle, as float32 values in C order. */
export class NpArray implements Buildable {
  shape: number[] = [];
  data = new Float32Array(0);
  dtype = '';
  constructor(private readonly file: string) {}
  setState(state: unknown): void {
    // (version, shape, dtype, is_fortran, raw bytes) — or without the version in old NumPy.
    const items = state instanceof PyTuple ? state.items : [];
    const [shape, dtype, fortran, raw] = items.length === 5 ? items.slice(1) : items;
    const fail = (why: string) => new ByolError('INVALID_DATA', `${this.file}: ${why}`, this.file);
    if (!(shape instanceof PyTuple) || !(dtype instanceof NpDtype) || !(raw instanceof Uint8Array)) throw fail('a NumPy array it cannot read');
    if (fortran) throw fail('a Fortran-ordered NumPy array');
    this.shape = shape.items.map(Number);
    this.dtype = dtype.kind;
    const n = this.shape.reduce((a, b) => a * b, 1);
    const width = Number(dtype.kind.slice(1));
    if (raw.length !== n * width) throw fail(`a NumPy array of shape [${this.shape}] and ${dtype.kind} with ${raw.length} bytes (truncated?)`);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const little = dtype.order !== '>';
    const get: (i: number) => number =
      dtype.kind === 'f4' ? (i) => view.getFloat32(4 * i, little)
      : dtype.kind === 'f8' ? (i) => view.getFloat64(8 * i, little)
      : dtype.kind === 'i4' ? (i) => view.getInt32(4 * i, little)
      : dtype.kind === 'i8' ? (i) => Number(view.getBigInt64(8 * i, little))
      : dtype.kind === 'u4' ? (i) => view.getUint32(4 * i, little)
      : dtype.kind === 'u1' || dtype.kind === 'b1' ? (i) => view.getUint8(i)
      : () => {
          throw fail(`a NumPy array of dtype ${dtype.kind}, which this reader does not take`);
        };
    this.data = new Float32Array(n);
    for (let i = 0; i < n; i++) this.data[i] = get(i);
  }
}

class NpDtype implements Buildable {
  order = '<';
  constructor(readonly kind: string) {}
  setState(state: unknown): void {
    const items = state instanceof PyTuple ? state.items : [];
    if (typeof items[1] === 'string') this.order = items[1];
  }
}

/** Experiment state fields, by position (byol_experiment.py). */
const STATE_FIELDS = ['online_params', 'target_params', 'online_state', 'target_state', 'opt_state'] as const;

function haikuGlobals(file: string): Map<string, (args: unknown[]) => unknown> {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  const mapping = (args: unknown[]) => {
    const m = new Map<unknown, unknown>();
    const src = args[0];
    if (src instanceof Map) for (const [k, v] of src) m.set(k, v);
    else if (Array.isArray(src)) for (const pair of src) if (pair instanceof PyTuple) m.set(pair.items[0], pair.items[1]);
    return m;
  };
  const reconstruct = () => new NpArray(file);
  const g = new Map<string, (args: unknown[]) => unknown>([
    ['numpy.core.multiarray._reconstruct', reconstruct],
    ['numpy._core.multiarray._reconstruct', reconstruct],
    ['numpy.ndarray', () => 'ndarray'],
    ['numpy.dtype', (a) => new NpDtype(String(a[0]))],
    [
      'numpy.core.multiarray.scalar',
      (a) => {
        const arr = new NpArray(file);
        arr.setState(new PyTuple([1, new PyTuple([]), a[0], false, a[1]]));
        return arr.data[0];
      },
    ],
    [
      '_codecs.encode',
      (a) => {
        // Protocol 2 stores bytes as latin-1 text (each byte one character).
        if (typeof a[0] !== 'string' || a[1] !== 'latin1') throw fail('an encoded string it does not take');
        return Buffer.from(a[0], 'latin1');
      },
    ],
    ['collections.OrderedDict', mapping],
    ['builtins.dict', mapping],
    ['haiku._src.data_structures.FlatMapping', mapping],
    ['haiku._src.data_structures.FlatMap', mapping],
    ['haiku.data_structures.FlatMapping', mapping],
    ['byol.byol_experiment._ByolExperimentState', (a) => new Map(STATE_FIELDS.map((f, i) => [f, a[i]]))],
    // The optimizer's state is not read: inert values. The official code's optax chain (byol/utils/optimizers.py:
    // add_weight_decay, scale_by_lars, optax.scale) leaves these state classes in a checkpoint's opt_state.
    ['byol.utils.optimizers.LarsState', () => null],
    ['byol.utils.optimizers.AddWeightDecayState', () => null],
    ['byol.utils.optimizers.ScaleByLarsState', () => null],
    ['optax._src.transform.ScaleState', () => null],
    ['optax._src.base.EmptyState', () => null],
  ]);
  g.set('numpy.core.numeric._frombuffer', () => {
    throw fail('a NumPy array pickled with protocol 5 buffers; save it with protocol 2 as the official code does');
  });
  return g;
}

/** The checkpoint's parameters and state, each module name → parameter name → array. */
export interface HaikuCheckpoint {
  readonly params: Map<string, Map<string, NpArray>>;
  readonly state: Map<string, Map<string, NpArray>>;
  readonly step: number | null;
}

function nested(v: unknown): Map<string, Map<string, NpArray>> {
  const out = new Map<string, Map<string, NpArray>>();
  if (!(v instanceof Map)) return out;
  for (const [module, params] of v) {
    if (!(params instanceof Map)) continue;
    const inner = new Map<string, NpArray>();
    for (const [name, arr] of params) if (arr instanceof NpArray) inner.set(String(name), arr);
    out.set(String(module), inner);
  }
  return out;
}

/**
 * Reads an official BYOL checkpoint (or any pickle of Haiku params: a dict of module → parameter → array, alone or as
 * `online_params` of an experiment state). `which` picks the online or the target network.
 */
export async function readHaikuCheckpoint(path: string, which: 'online' | 'target' = 'online'): Promise<HaikuCheckpoint> {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${path}: ${why}`, path);
  try {
    if ((await stat(path)).size > 8 * 2 ** 30) throw fail('over 8 GiB');
  } catch (e) {
    if (e instanceof ByolError) throw e;
    throw fail(`cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const data = await readFile(path);
  const root = unpickle(data, { globals: haikuGlobals(path), file: path });
  const state = root instanceof Map ? (root.get('experiment_state') ?? root) : root;
  if (!(state instanceof Map)) throw fail('not a BYOL checkpoint (expected a dict with experiment_state, or Haiku params)');
  const params = nested(state.get(`${which}_params`) ?? (which === 'online' ? state : undefined));
  if (params.size === 0) throw fail(`no ${which} parameters found (expected experiment_state.${which}_params)`);
  const step = root instanceof Map && typeof root.get('step') === 'number' ? (root.get('step') as number) : null;
  return { params, state: nested(state.get(`${which}_state`)), step };
}

