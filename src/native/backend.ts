/**
 * The `native` tfjs backend for Node: tfjs-backend-cpu's tensor storage and kernels, with the hot ones — convolution
 * forward and both gradients, batched matrix products, and their fused bias/ReLU forms — running in byol's oneDNN
 * addon (native/). Everything else is the cpu backend's own kernel.
 */
import { createRequire } from 'node:module';
import { totalmem } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
// The fused kernels' contract (names, inputs, outputs; reference implementations there): never the learner's modules.
import { FUSED_ADD_RELU_KERNEL, FUSED_BN_GRAD_KERNEL, FUSED_BN_RELU_TRAIN_KERNEL, FUSED_BN_TRAIN_KERNEL, FUSED_EMA_ALL_KERNEL, FUSED_EMA_KERNEL, FUSED_LARS_KERNEL, RELU_GRAD_KERNEL } from '../kernels.js';
import { ByolError } from '../errors.js';
import { BufferPool } from './pool.js';

interface Addon {
  /** Trailing numbers after the 7 geometry arrays: tokens of the tensors whose converted copies may be kept (see tokenOf). */
  conv2dForward(x: Float32Array, w: Float32Array, y: Float32Array, ...geomThenWTokenXPacked: (number[] | number)[]): void;
  conv2dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, ...geomThenWTokenDyTokenDyPacked: (number[] | number)[]): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, ...geomThenDyTokenXPackedDyPacked: (number[] | number)[]): void;
  /** Drops the converted copies (filter layouts, bf16) kept for a token's tensor. */
  forgetConverted(token: number): void;
  convertedStats(): { tokens: number; bytes: number };
  /** Bounds the converted copies' bytes (oldest out first; 0 keeps none; env BYOL_NATIVE_CONVERTED_MB). */
  setConvertedLimit(bytes: number): void;
  matMul(a: Float32Array, b: Float32Array, c: Float32Array, batchA: number, batchB: number, m: number, k: number, n: number, ta: boolean, tb: boolean): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, mode: number, inner: number): void;
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, inner: number, leading: boolean): void;
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void;
  reduceMiddle(op: number, x: Float32Array, out: Float32Array, outer: number, mid: number, inner: number): void;
  binaryMiddle(op: number, full: Float32Array, small: Float32Array, out: Float32Array, fullFirst: boolean, mid: number, inner: number): void;
  larsUpdate(p: Float32Array, g: Float32Array, mu: Float32Array, newP: Float32Array, newMu: Float32Array, lr: number, weightDecay: number, momentum: number, eta: number, adapt: boolean): void;
  emaUpdate(target: Float32Array, online: Float32Array, out: Float32Array, tau: number): void;
  emaUpdateAll(targets: Float32Array[], onlines: Float32Array[], outs: Float32Array[], tau: number): void;
  /** xPacked / outPacked: x / out stored as bf16 (then n is the number of values). */
  channelAffine(x: Float32Array, scale: Float32Array, shift: Float32Array, out: Float32Array, xPacked?: boolean, n?: number, outPacked?: boolean): void;
  /** packed: x and y stored as bf16. */
  maxPool(x: Float32Array, y: Float32Array, xShape: number[], yShape: number[], window: number[], strides: number[], padTopLeft: number[], packed?: boolean): void;
  /** xPacked: x stored as bf16. */
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, xShape: number[], yShape: number[], window: number[], strides: number[], padTopLeft: number[], xPacked?: boolean): void;
  /** yPacked / xPacked: y / x stored as bf16 (then n is x's number of values). */
  bnTrain(x: Float32Array, gamma: Float32Array, beta: Float32Array, eps: number, y: Float32Array, mean: Float32Array, variance: Float32Array, relu: boolean, yPacked?: boolean, xPacked?: boolean, n?: number): void;
  bnTrainGrad(x: Float32Array, dy: Float32Array, mean: Float32Array, variance: Float32Array, gamma: Float32Array, eps: number, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, y: Float32Array | null, yPacked?: boolean, xPacked?: boolean, n?: number, dxPacked?: boolean): void;
  /** y = max(0, x) stored as bf16 (two values per float32 element); x float32 or stored as bf16. */
  reluPacked(x: Float32Array, xPacked: boolean, y: Float32Array, n: number): void;
  /** out = a ∘ b (op 0 add, 8 ReLU's gradient, 9 max(0, a + b)) over n values; operands and out each float32 or stored as bf16. */
  binaryPacked(op: 0 | 8 | 9, a: Float32Array, aPacked: boolean, b: Float32Array, bPacked: boolean, out: Float32Array, outPacked: boolean, n: number): void;
  /** out[i] = the i-th bf16 value of packed. */
  unpackBf16(packed: Float32Array, out: Float32Array): void;
  /** out holds x's values as bf16, rounded to nearest even. */
  packBf16(x: Float32Array, out: Float32Array): void;
  setBf16(on: boolean): boolean;
  setThreads(n: number): void;
  /**
   * Which forward convolutions take: 0 oneDNN's convolution always, 1 the im2col matrix product wherever it applies,
   * 2 (default; env BYOL_NATIVE_CONV_GEMM) tuned per shape on its first call. Forgets tuned choices.
   */
  setConvGemm(mode: 0 | 1 | 2): void;
  /** The geometry keys of tuned shapes whose forward takes the matrix product. */
  convGemmShapes(): string[];
  /**
   * Whether a stride-1 undilated convolution's forward and backward-data passes may run on its mirror's kernels (the
   * mirror's backward-data pass is the forward, and its forward the backward-data pass): 0 never, 1 always where it
   * applies, 2 (default; env BYOL_NATIVE_CONV_MIRROR) tuned per shape on its first call. Forgets tuned choices.
   */
  setConvMirror(mode: 0 | 1 | 2): void;
  /** The keys of tuned passes that run on the mirror's kernel ("fwd,…" or "bwd_data,…", then precision and geometry). */
  convMirrorShapes(): string[];
  getThreads(): number;
  cacheSize(): number;
  /** The primitive cache: entries, bytes of conversion buffers, and their limits. */
  cacheStats(): { entries: number; bytes: number; limit: number; byteLimit: number };
  /** Bounds the primitive cache (least recently used out first; env BYOL_NATIVE_CACHE, BYOL_NATIVE_CACHE_MB). */
  setCacheLimits(entries: number, bytes: number): void;
  /** The convolution implementations oneDNN dispatches here, naming the instruction set ("" where none). */
  implInfo(): { fp32: string; bf16: string };
  readonly dnnlVersion: string;
}

let addon: Addon | null | undefined;
let loadError = '';

/**
 * The compiled addon, or null (with the reason in {@link nativeLoadError}) when it was not built or the environment
 * sets BYOL_NATIVE=0.
 */
export function loadNativeAddon(): Addon | null {
  if (addon !== undefined) return addon;
  if (process.env['BYOL_NATIVE'] === '0') {
    addon = null;
    loadError = 'disabled by BYOL_NATIVE=0';
    return addon;
  }
  applyWaitPolicy();
  try {
    const require = createRequire(import.meta.url);
    addon = require('../../../native/build/Release/byol_native.node') as Addon;
  } catch (e) {
    addon = null;
    loadError = (e as Error).message.split('\n')[0] ?? 'unknown error';
  }
  return addon;
}

/**
 * How the addon's OpenMP threads wait for work, set before the OpenMP runtime loads (it reads its environment once).
 * libgomp's default spins up to 300 000 times before sleeping, which on a machine another process also uses burns the
 * cores that process needs and then waits for them: measured on 2 cores with one competing process of two busy threads
 * (`node dist/bench/load.js`), the ConvNet step kept 0.29–0.32 of its idle speed and the CIFAR ResNet-18 step 0.34.
 * A short spin (GOMP_SPINCOUNT=1000) kept 0.56 and 0.45 (OMP_WAIT_POLICY=passive: 0.43–0.44 and 0.55) for about 5 %
 * of the ConvNet's idle speed. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is; BYOL_OMP_WAIT=keep keeps
 * libgomp's default.
 */
export function applyWaitPolicy(env: NodeJS.ProcessEnv = process.env): void {
  if (env['OMP_WAIT_POLICY'] !== undefined || env['GOMP_SPINCOUNT'] !== undefined || env['BYOL_OMP_WAIT'] === 'keep') return;
  env['GOMP_SPINCOUNT'] = '1000';
}

const flag = (values: string[]) => ({ expected: values.map((v) => `"${v}"`).join(' or '), ok: (v: string) => values.includes(v) });
const count = (min: number) => ({ expected: `a whole number ≥ ${min}`, ok: (v: string) => /^\d+$/.test(v) && Number(v) >= min });
/** The environment variables the native backend reads (in JavaScript or in the addon), and what each accepts. */
export const NATIVE_ENV: Readonly<Record<string, { expected: string; ok: (value: string) => boolean }>> = {
  BYOL_NATIVE: flag(['0', '1']),
  BYOL_NATIVE_BF16_ACTIVATIONS: flag(['0', '1']),
  BYOL_NATIVE_MALLOC: flag(['0', '1']),
  BYOL_NATIVE_CONV_GEMM: flag(['0', '1', '2']),
  BYOL_NATIVE_CONV_MIRROR: flag(['0', '1', '2']),
  BYOL_NATIVE_CACHE: count(1),
  BYOL_NATIVE_CACHE_MB: count(0),
  BYOL_NATIVE_CONVERTED_MB: count(0),
  BYOL_NATIVE_POOL_MB: { expected: 'a number of MB ≥ 0', ok: (v) => v.trim() !== '' && Number.isFinite(Number(v)) && Number(v) >= 0 },
  BYOL_OMP_WAIT: flag(['keep']),
};

/**
 * Throws a ByolError (INVALID_OPTION, naming the variable) for a native-backend environment variable set to a value it
 * does not take — the addon alone would read "BYOL_NATIVE_CONV_MIRROR=off" as unset and go on tuning. Empty values
 * count as unset. Called when the backend registers.
 */
export function checkNativeEnv(env: NodeJS.ProcessEnv = process.env): void {
  for (const [name, rule] of Object.entries(NATIVE_ENV)) {
    const value = env[name];
    if (value === undefined || value === '' || rule.ok(value)) continue;
    throw new ByolError('INVALID_OPTION', `environment variable ${name} must be ${rule.expected}; got ${JSON.stringify(value)}`, name);
  }
}

export function nativeLoadError(): string {
  return loadError;
}

/**
 * The most bytes of disposed outputs the native backend keeps for reuse: `BYOL_NATIVE_POOL_MB` (0 turns reuse off),
 * else no bound but the pool's own: it never keeps more than its buffers once held live at the same time, and on a
 * miss it drops free buffers so that live plus free stays within that working set — so in a training loop it holds
 * one step's outputs, never more memory than the step itself needs. (Half the machine's memory was the bound before:
 * a ResNet-50 step at batch 32 lives in ~17 GB, so on a 24 GB machine a third of its outputs were fresh pages every
 * step — 1.1 M page faults, 6 s of kernel time, 12.7 s steps instead of 7.)
 */
function poolLimitBytes(): number {
  const env = process.env['BYOL_NATIVE_POOL_MB'];
  if (env !== undefined && env !== '' && Number.isFinite(Number(env)) && Number(env) >= 0) return Number(env) * 2 ** 20;
  return totalmem();
}

/** Output buffers of every native kernel (see pool.ts). */
const pool = new BufferPool(poolLimitBytes());

/**
 * Tokens naming tensors' data for the addon's converted copies (a filter reordered to oneDNN's layout, an input in
 * bf16), which then serve every call that reads the same tensor: the forward of both views, both backward-data passes.
 * A data id's values never change once written, and a token is never reused, so a copy can never be stale; the
 * backend forgets a token when its data id is disposed.
 */
const tokens = new WeakMap<object, number>();
let nextToken = 1;
function tokenOf(dataId: object): number {
  let t = tokens.get(dataId);
  if (t === undefined) tokens.set(dataId, (t = nextToken++));
  return t;
}

/**
 * bf16 activations (bf16 mode): the outputs of plain convolutions, of batch norm (training or inference form, with or
 * without ReLU), of ReLU on images, of residual sums and of max pooling are stored as bfloat16, two values per float32
 * element, as PyTorch's autocast keeps them — the convolutions that read them take them as they are (no conversion
 * pass: they would have rounded them to bf16 themselves, identically), batch norm and the gradients read them too,
 * and the saved activations take half the memory. So is the
 * gradient batch norm hands back to the convolution before it (whose backward passes would round it to bf16 too).
 * Data ids stored so map to their number of values. Any other reader (a kernel that knows nothing of it, dataSync)
 * first turns the data back into float32 for good (see {@link unpack}), so a stored-bf16 tensor is never misread.
 * BYOL_NATIVE_BF16_ACTIVATIONS=0 keeps them float32.
 */
const packed = new WeakMap<object, number>();
let packActivations = false;

/** Whether the tensor's data is stored as bf16 on the native backend now (tests, diagnostics). */
export function isStoredBf16(t: tf.TensorInfo): boolean {
  return packed.has(t.dataId);
}

/** Turns stored-bf16 data back into float32, for good; nothing when it is float32. */
function unpack(backend: MathBackendCPU, dataId: object): void {
  const n = packed.get(dataId);
  if (n === undefined) return;
  const entry = backend.data.get(dataId);
  packed.delete(dataId);
  if (!entry) return;
  const out = uninit(n);
  addon!.unpackBf16(entry.values as Float32Array, out);
  pool.give(entry.values);
  entry.values = out;
}

/** Kernels that read no values (they share or re-describe the input's data): no unpacking before them. */
const DATA_FREE_KERNELS = new Set(['Identity', 'Reshape']);

/** How deep we are in cpu-backend kernels: their reads of inputs need no defensive copy. */
let kernelDepth = 0;

export class NativeBackend extends MathBackendCPU {
  constructor() {
    super();
    // The cpu backend's "install tfjs-node" banner does not apply to this backend.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** A disposed tensor's buffer goes back to the pool (only once no other tensor shares its data id). */
  override disposeData(dataId: object, force = false): boolean {
    const entry = this.data.get(dataId);
    const released = super.disposeData(dataId, force);
    if (released && entry) pool.give(entry.values);
    if (released) {
      const token = tokens.get(dataId);
      if (token !== undefined) {
        tokens.delete(dataId);
        addon?.forgetConverted(token);
      }
    }
    return released;
  }

  /** Readers outside kernels (dataSync, data, bufferSync) get a copy of a pooled buffer, which may be reused later. */
  override readSync(dataId: object): tf.backend_util.BackendValues {
    unpack(this, dataId);
    const v = super.readSync(dataId);
    return kernelDepth === 0 && v instanceof Float32Array && pool.owns(v) ? v.slice() : v;
  }
}

/** Frees the memory the native backend keeps for reuse, and says how the pool has served so far. */
export function releaseNativeMemory(): { freedBytes: number; peakLiveBytes: number; reused: number; allocated: number } {
  const s = pool.stats();
  pool.clear();
  return { freedBytes: s.freeBytes, peakLiveBytes: s.peakLiveBytes, reused: s.reused, allocated: s.allocated };
}

/**
 * A cpu-backend kernel run on the native backend's storage: while it runs, reads are not copied; afterwards any
 * output that aliases a pooled buffer under a new data id (the cpu Slice returns a view of its input) becomes a copy,
 * so that disposing the input cannot hand memory the output still uses back to the pool.
 */
function cpuOnNative(kernelFunc: tf.KernelFunc, kernelName: string): tf.KernelFunc {
  return (args) => {
    if (!DATA_FREE_KERNELS.has(kernelName)) for (const t of Object.values(args.inputs)) if (t) unpack(args.backend as MathBackendCPU, t.dataId);
    kernelDepth++;
    let result: Info | Info[];
    try {
      result = kernelFunc(args) as Info | Info[];
    } finally {
      kernelDepth--;
    }
    const backend = args.backend as MathBackendCPU;
    const inputIds = new Set(Object.values(args.inputs).map((t) => t?.dataId));
    for (const out of Array.isArray(result) ? result : [result]) {
      if (inputIds.has(out.dataId)) continue;
      const entry = backend.data.get(out.dataId);
      if (entry && entry.values instanceof Float32Array && pool.owns(entry.values)) entry.values = entry.values.slice();
    }
    return result;
  };
}

type Info = tf.TensorInfo;

/** The cpu backend's own kernel `name` on native storage: for inputs or shapes the native kernels do not take. */
function fallback(name: string, args: Parameters<tf.KernelFunc>[0]): Info {
  return cpuOnNative(tf.getKernel(name, 'cpu')!.kernelFunc, name)(args) as Info;
}

/**
 * An output array that the kernel overwrites entirely: from the pool of disposed outputs, or fresh without V8's zero
 * fill (a fresh multi-megabyte output otherwise costs a full extra pass, its page faults and later a GC).
 */
function uninit(n: number): Float32Array {
  return pool.take(n);
}

/**
 * A float32 tensor's data as a Float32Array (the cpu backend may hold other array types, e.g. for constants); data
 * stored as bf16 is first turned back into float32.
 */
const values = (backend: MathBackendCPU, t: Info): Float32Array => {
  unpack(backend, t.dataId);
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(backend.readSync(t.dataId) as ArrayLike<number>);
};

/** A tensor's data as it is stored: float32, or (packed) bf16 values two per element — for kernels that read both. */
const stored = (backend: MathBackendCPU, t: Info): { data: Float32Array; packed: boolean } =>
  packed.has(t.dataId) ? { data: backend.data.get(t.dataId).values as Float32Array, packed: true } : { data: values(backend, t), packed: false };

/** Whether an activation of this shape is stored as bf16: an image batch (rank 4, NHWC) in bf16 mode with bf16 activations. */
const imageInBf16 = (shape: readonly number[]): boolean => packActivations && shape.length === 4;

/**
 * A fresh float32 tensor of `shape` whose data `fill` writes: stored as bf16 (two values per element) when `pack`,
 * which `fill` is told, with the number of values.
 */
function output(backend: MathBackendCPU, shape: readonly number[], pack: boolean, fill: (out: Float32Array, pack: boolean, n: number) => void): Info {
  const n = tf.util.sizeFromShape([...shape]);
  const out = uninit(pack ? Math.ceil(n / 2) : n);
  fill(out, pack, n);
  const info = backend.makeTensorInfo([...shape], 'float32', out);
  if (pack) packed.set(info.dataId, n);
  return info;
}

function convGeometry(c: tf.backend_util.Conv2DInfo): number[][] {
  return [
    [c.batchSize, c.inHeight, c.inWidth, c.inChannels],
    [c.filterHeight, c.filterWidth, c.inChannels, c.outChannels],
    [c.batchSize, c.outHeight, c.outWidth, c.outChannels],
    [c.strideHeight, c.strideWidth],
    [c.dilationHeight, c.dilationWidth],
    [c.padInfo.top, c.padInfo.left],
    [c.padInfo.bottom, c.padInfo.right],
  ];
}

/** Adds a per-channel bias and applies ReLU in place; false if the activation is one we leave to tfjs. */
function biasActivation(out: Float32Array, bias: Float32Array | null, activation: string | undefined): boolean {
  if (activation !== undefined && activation !== 'linear' && activation !== 'relu') return false;
  if (bias) {
    const c = bias.length;
    for (let i = 0; i < out.length; i++) out[i]! += bias[i % c]!;
  }
  if (activation === 'relu') for (let i = 0; i < out.length; i++) if (out[i]! < 0) out[i] = 0;
  return true;
}

function registerKernels(a: Addon): void {
  const reg = (kernelName: string, kernelFunc: tf.KernelFunc) => {
    if (tf.getKernel(kernelName, 'native')) tf.unregisterKernel(kernelName, 'native');
    tf.registerKernel({ kernelName, backendName: 'native', kernelFunc });
  };
  // Everything the cpu backend has, first.
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (!tf.getKernel(k.kernelName, 'native')) tf.registerKernel({ ...k, backendName: 'native', kernelFunc: cpuOnNative(k.kernelFunc, k.kernelName) });
  }

  const conv = (args: Parameters<tf.KernelFunc>[0], name: 'Conv2D' | 'FusedConv2D'): Info => {
    const { inputs, attrs } = args;
    const backend = args.backend as MathBackendCPU;
    const x = inputs['x']!;
    const filter = inputs['filter']!;
    const at = attrs as unknown as { strides: number | [number, number]; pad: 'same' | 'valid' | number; dataFormat: 'NHWC' | 'NCHW'; dilations: number | [number, number]; dimRoundingMode?: 'floor' | 'round' | 'ceil'; activation?: string };
    const bias = name === 'FusedConv2D' ? (inputs['bias'] ?? null) : null;
    const extra = name === 'FusedConv2D' && (inputs['preluActivationWeights'] != null || (at.activation !== undefined && at.activation !== 'linear' && at.activation !== 'relu'));
    if (at.dataFormat === 'NCHW' || x.dtype !== 'float32' || extra || (bias && bias.shape.length !== 1)) return fallback(name, args);
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], at.strides, at.dilations, at.pad, at.dimRoundingMode, false, 'channelsLast');
    const xs = stored(backend, x);
    // In bf16 mode a plain convolution's output is stored as bf16 (oneDNN writes it so): batch norm reads it next.
    const pack = packActivations && bias === null && (at.activation === undefined || at.activation === 'linear');
    return output(backend, info.outShape, pack, (out, bf16) => {
      a.conv2dForward(xs.data, values(backend, filter), out, ...convGeometry(info), tokenOf(filter.dataId), xs.packed ? 1 : 0, bf16 ? 1 : 0);
      if (!bf16) biasActivation(out, bias ? values(backend, bias) : null, at.activation);
    });
  };
  reg('Conv2D', (args) => conv(args, 'Conv2D'));
  reg('FusedConv2D', (args) => conv(args, 'FusedConv2D'));

  type GradAttrs = { strides: number | [number, number]; pad: 'same' | 'valid' | number; dataFormat: string; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
  type Shape4 = [number, number, number, number];
  /** A convolution gradient: geometry from the input and filter shapes, `run` fills the output of shape `outShape`. */
  const convGrad = (
    name: string,
    args: Parameters<tf.KernelFunc>[0],
    first: Info,
    xShape: Shape4,
    filterShape: Shape4,
    outShape: Shape4,
    run: (backend: MathBackendCPU, out: Float32Array, geometry: number[][]) => void,
  ): Info => {
    const at = args.attrs as unknown as GradAttrs;
    if (at.dataFormat === 'NCHW' || first.dtype !== 'float32') return fallback(name, args);
    const backend = args.backend as MathBackendCPU;
    const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
    const out = uninit(tf.util.sizeFromShape(outShape));
    run(backend, out, convGeometry(info));
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
  reg('Conv2DBackpropInput', (args) => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const { inputShape } = args.attrs as unknown as { inputShape: Shape4 };
    return convGrad('Conv2DBackpropInput', args, dy, inputShape, filter.shape as Shape4, inputShape, (backend, out, geometry) =>
      {
        const dys = stored(backend, dy);
        a.conv2dBackpropInput(dys.data, values(backend, filter), out, ...geometry, tokenOf(filter.dataId), tokenOf(dy.dataId), dys.packed ? 1 : 0);
      },
    );
  });
  reg('Conv2DBackpropFilter', (args) => {
    const { x, dy } = args.inputs as { x: Info; dy: Info };
    const { filterShape } = args.attrs as unknown as { filterShape: Shape4 };
    return convGrad('Conv2DBackpropFilter', args, x, x.shape as Shape4, filterShape, filterShape, (backend, out, geometry) =>
      {
        const xs = stored(backend, x);
        const dys = stored(backend, dy);
        a.conv2dBackpropFilter(xs.data, dys.data, out, ...geometry, tokenOf(dy.dataId), xs.packed ? 1 : 0, dys.packed ? 1 : 0);
      },
    );
  });

  const matmul = (args: Parameters<tf.KernelFunc>[0], name: 'BatchMatMul' | '_FusedMatMul'): Info => {
    const backend = args.backend as MathBackendCPU;
    const A = args.inputs['a']!;
    const B = args.inputs['b']!;
    const at = args.attrs as unknown as { transposeA: boolean; transposeB: boolean; activation?: string };
    const bias = name === '_FusedMatMul' ? (args.inputs['bias'] ?? null) : null;
    const rank = A.shape.length;
    const unsupported =
      A.dtype !== 'float32' || B.dtype !== 'float32' || rank !== B.shape.length || rank < 2 || rank > 3 ||
      (name === '_FusedMatMul' && (args.inputs['preluActivationWeights'] != null || (at.activation !== undefined && at.activation !== 'linear' && at.activation !== 'relu'))) ||
      (bias !== null && bias.shape.length !== 1);
    if (unsupported) return fallback(name, args);
    const batchA = rank === 3 ? A.shape[0]! : 1;
    const batchB = rank === 3 ? B.shape[0]! : 1;
    if (batchA !== batchB && batchA !== 1 && batchB !== 1) return fallback(name, args);
    const m = at.transposeA ? A.shape[rank - 1]! : A.shape[rank - 2]!;
    const k = at.transposeA ? A.shape[rank - 2]! : A.shape[rank - 1]!;
    const n = at.transposeB ? B.shape[rank - 2]! : B.shape[rank - 1]!;
    const batch = Math.max(batchA, batchB);
    const out = uninit(batch * m * n);
    a.matMul(values(backend, A), values(backend, B), out, batchA, batchB, m, k, n, at.transposeA, at.transposeB);
    biasActivation(out, bias ? values(backend, bias) : null, at.activation);
    return backend.makeTensorInfo(rank === 3 ? [batch, m, n] : [m, n], 'float32', out);
  };
  reg('BatchMatMul', (args) => matmul(args, 'BatchMatMul'));

  // Batch norm with per-channel statistics: (x − μ)·γ/√(σ² + ε) + β folded into one multiply-add per value.
  reg('FusedBatchNorm', (args) => {
    const backend = args.backend as MathBackendCPU;
    const { x, mean, variance, offset, scale } = args.inputs as Record<string, Info | undefined>;
    const eps = (args.attrs as unknown as { varianceEpsilon: number }).varianceEpsilon;
    const c = x!.shape[x!.shape.length - 1]!;
    const perChannel = (t: Info | undefined) => t === undefined || (t.dtype === 'float32' && tf.util.sizeFromShape(t.shape) === c && t.shape.every((d, i) => d === 1 || i === t.shape.length - 1));
    if (x!.dtype !== 'float32' || ![mean, variance, offset, scale].every(perChannel) || !mean || !variance) return fallback('FusedBatchNorm', args);
    const m = values(backend, mean);
    const v = values(backend, variance);
    const g = scale ? values(backend, scale) : null;
    const b = offset ? values(backend, offset) : null;
    const mul = new Float32Array(c);
    const add = new Float32Array(c);
    for (let j = 0; j < c; j++) {
      mul[j] = (g ? g[j]! : 1) / Math.sqrt(v[j]! + eps);
      add[j] = (b ? b[j]! : 0) - m[j]! * mul[j]!;
    }
    // In bf16 mode (evaluation of a bf16 run): images read and written as bf16, as in training.
    const xs = stored(backend, x!);
    return output(backend, x!.shape, imageInBf16(x!.shape), (out, bf16, n) => a.channelAffine(xs.data, mul, add, out, xs.packed, n, bf16));
  });

  // Batch norm's training pass (see nets/batchnorm.ts): statistics, normalization and affine in three passes over x
  // where tf.moments + tf.batchNorm take about eight, and the whole gradient in two where tfjs takes about twenty.
  // With ReLU (FUSED_BN_RELU_TRAIN_KERNEL) the rectification rides in the normalization pass, and the output is marked
  // as already rectified: the ReLU layer after it then costs nothing (see the Relu kernel and gradient below).
  const bnTrain = (args: Parameters<tf.KernelFunc>[0], relu: boolean): Info[] => {
    const backend = args.backend as MathBackendCPU;
    const { x, scale, offset } = args.inputs as Record<string, Info>;
    const c = scale!.shape[0]!;
    const mean = new Float32Array(c);
    const variance = new Float32Array(c);
    const eps = (args.attrs as unknown as { varianceEpsilon: number }).varianceEpsilon;
    const xs = stored(backend, x!);
    const n = tf.util.sizeFromShape(x!.shape);
    // Images stored as bf16: read next by convolutions (with ReLU) or by a residual sum.
    const y = output(backend, x!.shape, imageInBf16(x!.shape), (out, bf16) =>
      a.bnTrain(xs.data, values(backend, scale!), values(backend, offset!), eps, out, mean, variance, relu, bf16, xs.packed, n),
    );
    if (relu) rectified.add(y.dataId);
    return [y, backend.makeTensorInfo([c], 'float32', mean), backend.makeTensorInfo([c], 'float32', variance)];
  };
  reg(FUSED_BN_TRAIN_KERNEL, (args) => bnTrain(args, false));
  reg(FUSED_BN_RELU_TRAIN_KERNEL, (args) => bnTrain(args, true));
  reg(FUSED_BN_GRAD_KERNEL, (args) => {
    const backend = args.backend as MathBackendCPU;
    const { x, dy, mean, variance, scale, y } = args.inputs as Record<string, Info | undefined>;
    const c = scale!.shape[0]!;
    const n = tf.util.sizeFromShape(x!.shape);
    const dScale = new Float32Array(c);
    const dOffset = new Float32Array(c);
    const ys = y ? stored(backend, y) : null;
    const xs = stored(backend, x!);
    const eps = (args.attrs as unknown as { varianceEpsilon: number }).varianceEpsilon;
    // The gradient reaching a convolution's output: stored as bf16, as the convolution's backward passes would round it.
    const dx = output(backend, x!.shape, imageInBf16(x!.shape), (out, bf16) =>
      a.bnTrainGrad(xs.data, values(backend, dy!), values(backend, mean!), values(backend, variance!), values(backend, scale!), eps, out, dScale, dOffset, ys ? ys.data : null, ys?.packed ?? false, xs.packed, n, bf16),
    );
    return [dx, backend.makeTensorInfo([c], 'float32', dScale), backend.makeTensorInfo([c], 'float32', dOffset)];
  });

  // One fused LARS step (see Lars in train/optimizer.ts): outputs [new parameter, new momentum].
  reg(FUSED_LARS_KERNEL, (args) => {
    const backend = args.backend as MathBackendCPU;
    const { p, g, mu } = args.inputs as Record<string, Info>;
    const at = args.attrs as unknown as { lr: number; weightDecay: number; momentum: number; eta: number; adapt: boolean };
    const n = tf.util.sizeFromShape(p!.shape);
    const newP = uninit(n);
    const newMu = uninit(n);
    a.larsUpdate(values(backend, p!), values(backend, g!), values(backend, mu!), newP, newMu, at.lr, at.weightDecay, at.momentum, at.eta, at.adapt);
    return [backend.makeTensorInfo(p!.shape, 'float32', newP), backend.makeTensorInfo(p!.shape, 'float32', newMu)];
  });

  // The target's EMA update in one pass: τ·ξ + (1 − τ)·θ.
  reg(FUSED_EMA_KERNEL, (args) => {
    const backend = args.backend as MathBackendCPU;
    const { target, online } = args.inputs as Record<string, Info>;
    const out = uninit(tf.util.sizeFromShape(target!.shape));
    a.emaUpdate(values(backend, target!), values(backend, online!), out, (args.attrs as unknown as { tau: number }).tau);
    return backend.makeTensorInfo(target!.shape, 'float32', out);
  });

  // The EMA of every target weight in one call (inputs target0, online0, …): one kernel dispatch instead of one per
  // weight. Shapes are checked by the caller (byol/ema.ts).
  reg(FUSED_EMA_ALL_KERNEL, (args) => {
    const backend = args.backend as MathBackendCPU;
    const inputs = args.inputs as Record<string, Info>;
    const count = Object.keys(inputs).length / 2;
    const targets: Info[] = [];
    const onlines: Info[] = [];
    for (let i = 0; i < count; i++) {
      targets.push(inputs[`target${i}`]!);
      onlines.push(inputs[`online${i}`]!);
    }
    const outs = targets.map((t) => uninit(tf.util.sizeFromShape(t.shape)));
    a.emaUpdateAll(targets.map((t) => values(backend, t)), onlines.map((o) => values(backend, o)), outs, (args.attrs as unknown as { tau: number }).tau);
    return targets.map((t, i) => backend.makeTensorInfo(t.shape, 'float32', outs[i]!));
  });

  reg('MaxPool', (args) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs['x']!;
    const at = args.attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: 'same' | 'valid' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
    if (x.dtype !== 'float32' || x.shape.length !== 4) return fallback('MaxPool', args);
    const info = tf.backend_util.computePool2DInfo(x.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode);
    // A 1×1 window that keeps the shape is tfjs's identity: leave it to the cpu kernel.
    if (info.filterHeight === 1 && info.filterWidth === 1 && tf.util.arraysEqual(info.inShape, info.outShape)) return fallback('MaxPool', args);
    const geometry: [number[], number[], number[], number[], number[]] = [[...x.shape], [...info.outShape], [info.filterHeight, info.filterWidth], [info.strideHeight, info.strideWidth], [info.padInfo.top, info.padInfo.left]];
    // Pooling stored-bf16 activations: the maxima are bf16 values already, stored so (the next convolution reads them).
    const xs = stored(backend, x);
    return output(backend, info.outShape, xs.packed, (out, bf16) => a.maxPool(xs.data, out, ...geometry, bf16));
  });
  reg('MaxPoolGrad', (args) => {
    const backend = args.backend as MathBackendCPU;
    const { dy, input } = args.inputs as { dy: Info; input: Info };
    const at = args.attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: 'same' | 'valid' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
    if (input.dtype !== 'float32') return fallback('MaxPoolGrad', args);
    const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode);
    const out = uninit(tf.util.sizeFromShape(input.shape)); // zeroed by the kernel
    const xs = stored(backend, input);
    a.maxPoolGrad(values(backend, dy), xs.data, out, [...input.shape], [...info.outShape], [info.filterHeight, info.filterWidth], [info.strideHeight, info.strideWidth], [info.padInfo.top, info.padInfo.left], xs.packed);
    return backend.makeTensorInfo(input.shape, 'float32', out);
  });
  reg('_FusedMatMul', (args) => matmul(args, '_FusedMatMul'));
}

/**
 * How `small` repeats inside `out` (both right-aligned, as tfjs broadcasts): `periodic` (small covers the last dims of
 * out: small[i % inner]) or `block` (small covers the first dims: small[i / inner]); null for other patterns.
 */
export function broadcastPattern(small: readonly number[], out: readonly number[]): { kind: 'periodic' | 'block'; inner: number } | null {
  const r = out.length;
  const s = [...new Array<number>(r - small.length).fill(1), ...small];
  const size = (d: readonly number[]) => d.reduce((a, b) => a * b, 1);
  // periodic: s = [1, …, 1, out[k], …, out[r−1]]
  for (let k = 0; k <= r; k++) {
    if (s.slice(0, k).every((d) => d === 1) && s.slice(k).every((d, i) => d === out[k + i])) return { kind: 'periodic', inner: size(out.slice(k)) };
  }
  // block: s = [out[0], …, out[k−1], 1, …, 1]
  for (let k = r; k >= 0; k--) {
    if (s.slice(0, k).every((d, i) => d === out[i]) && s.slice(k).every((d) => d === 1)) return { kind: 'block', inner: size(out.slice(k)) };
  }
  return null;
}

/** `small` equals `out` but for a run of middle dims set to 1: out viewed as [outer, mid, inner], small as [outer, inner]. */
export function middlePattern(small: readonly number[], out: readonly number[]): { mid: number; inner: number } | null {
  const r = out.length;
  if (small.length !== r) return null;
  const ones = small.map((d, i) => d === 1 && out[i] !== 1);
  const first = ones.indexOf(true);
  if (first < 0) return null;
  let last = first;
  while (last + 1 < r && (ones[last + 1] || out[last + 1] === 1)) last++;
  for (let i = 0; i < r; i++) if ((i < first || i > last) && small[i] !== out[i]) return null;
  const size = (d: readonly number[]) => d.reduce((a, b) => a * b, 1);
  return { mid: size(out.slice(first, last + 1)), inner: size(out.slice(last + 1)) };
}

/** Calls `visit` for each run of the last dimension of `shape`, in order, with its index in the leading dimensions. */
function forEachRow(shape: readonly number[], visit: (row: number, index: readonly number[]) => void): void {
  const r = shape.length;
  const rows = tf.util.sizeFromShape(shape.slice(0, r - 1));
  const index = new Array<number>(Math.max(0, r - 1)).fill(0);
  for (let row = 0; row < rows; row++) {
    visit(row, index);
    for (let d = r - 2; d >= 0; d--) {
      if (++index[d]! < shape[d]!) break;
      index[d] = 0;
    }
  }
}

function registerElementwise(a: Addon): void {
  const reg = (kernelName: string, kernelFunc: tf.KernelFunc) => {
    if (tf.getKernel(kernelName, 'native')) tf.unregisterKernel(kernelName, 'native');
    tf.registerKernel({ kernelName, backendName: 'native', kernelFunc });
  };
  const binaries: [string, number][] = [['Add', 0], ['Sub', 1], ['Multiply', 2], ['RealDiv', 3], ['Maximum', 4], ['Minimum', 5], ['SquaredDifference', 6], ['Pow', 7], [RELU_GRAD_KERNEL, 8]];
  for (const [name, op] of binaries) {
    reg(name, (args) => {
      const backend = args.backend as MathBackendCPU;
      const A = args.inputs['a']!;
      const B = args.inputs['b']!;
      if (A.dtype !== 'float32' || B.dtype !== 'float32') return fallback(name, args);
      const outShape = tf.backend_util.assertAndGetBroadcastShape(A.shape, B.shape);
      const n = tf.util.sizeFromShape(outShape);
      // Operands stored as bf16 read as they are: a residual sum (stored as bf16 too when both are, as PyTorch's type
      // promotion has it — in a ResNet a ReLU reads it next, which rounds it the same), or ReLU's gradient with its
      // stored-bf16 output as the mask.
      if ((op === 0 || op === 8) && (packed.has(A.dataId) || packed.has(B.dataId)) && tf.util.sizeFromShape(A.shape) === n && tf.util.sizeFromShape(B.shape) === n) {
        const as = stored(backend, A);
        const bs = stored(backend, B);
        const pack = op === 0 && as.packed && bs.packed && imageInBf16(outShape);
        return output(backend, outShape, pack, (out, bf16) => a.binaryPacked(op, as.data, as.packed, bs.data, bs.packed, out, bf16, n));
      }
      let mode = -1;
      let inner = n;
      if (tf.util.sizeFromShape(A.shape) === n && tf.util.sizeFromShape(B.shape) === n) mode = 0;
      else if (tf.util.sizeFromShape(A.shape) === n) {
        const p = broadcastPattern(B.shape, outShape);
        if (p) [mode, inner] = [p.kind === 'periodic' ? 1 : 3, p.inner];
      } else if (tf.util.sizeFromShape(B.shape) === n) {
        const p = broadcastPattern(A.shape, outShape);
        if (p) [mode, inner] = [p.kind === 'periodic' ? 2 : 4, p.inner];
      }
      if (mode < 0 && n > 0) {
        const aFull = tf.util.sizeFromShape(A.shape) === n;
        const m = aFull ? middlePattern(B.shape, outShape) : tf.util.sizeFromShape(B.shape) === n ? middlePattern(A.shape, outShape) : null;
        if (m && m.inner > 0) {
          const out = uninit(n);
          a.binaryMiddle(op, values(backend, aFull ? A : B), values(backend, aFull ? B : A), out, aFull, m.mid, m.inner);
          return backend.makeTensorInfo(outShape, 'float32', out);
        }
      }
      if (mode < 0 || n === 0 || inner === 0) return fallback(name, args);
      const out = uninit(n);
      a.binary(op, values(backend, A), values(backend, B), out, mode, inner);
      return backend.makeTensorInfo(outShape, 'float32', out);
    });
  }
  // A residual sum and its ReLU in one pass (nets/residual.ts), its output marked as rectified: the ReLU layer after it
  // then costs nothing, forward or backward (see the Relu kernel and gradient). Images in bf16 mode are stored as bf16,
  // as the ReLU would have stored them (the same values: rounding commutes with max(0, ·)).
  reg(FUSED_ADD_RELU_KERNEL, (args) => {
    const backend = args.backend as MathBackendCPU;
    const A = args.inputs['a']!;
    const B = args.inputs['b']!;
    if (A.dtype !== 'float32' || B.dtype !== 'float32' || !tf.util.arraysEqual(A.shape, B.shape)) {
      throw new Error(`${FUSED_ADD_RELU_KERNEL}: a and b must be float32 of one shape (got ${A.dtype} [${A.shape}], ${B.dtype} [${B.shape}])`);
    }
    const as = stored(backend, A);
    const bs = stored(backend, B);
    const n = tf.util.sizeFromShape(A.shape);
    const y = output(backend, A.shape, imageInBf16(A.shape), (out, bf16) => a.binaryPacked(9, as.data, as.packed, bs.data, bs.packed, out, bf16, n));
    rectified.add(y.dataId);
    return y;
  });
  const unaries: [string, number][] = [['Relu', 0], ['Step', 1], ['Square', 2], ['Sqrt', 3], ['Rsqrt', 4], ['Exp', 5], ['Neg', 6], ['Abs', 7]];
  for (const [name, op] of unaries) {
    reg(name, (args) => {
      const backend = args.backend as MathBackendCPU;
      const x = args.inputs['x']!;
      if (x.dtype !== 'float32') return fallback(name, args);
      // ReLU of what batch norm + ReLU already rectified: the same values, shared (as tfjs's Reshape shares them).
      if (op === 0 && rectified.has(x.dataId)) {
        backend.incRef(x.dataId);
        return { dataId: x.dataId, shape: [...x.shape], dtype: 'float32' };
      }
      // ReLU of images in bf16 mode (a residual block's output, read next by convolutions): stored as bf16.
      if (op === 0 && imageInBf16(x.shape)) {
        const xs = stored(backend, x);
        return output(backend, x.shape, true, (out, _bf16, n) => a.reluPacked(xs.data, xs.packed, out, n));
      }
      const out = uninit(tf.util.sizeFromShape(x.shape));
      a.unary(op, values(backend, x), out, Number((args.attrs as Record<string, unknown> | undefined)?.['alpha'] ?? 0));
      return backend.makeTensorInfo(x.shape, 'float32', out);
    });
  }
  // Pad and Slice by row copies (tfjs-cpu walks them element by element: a PyTorch-padded ResNet-18 step spent 21 of
  // its 22 s in them). Each run of the last dimension is one copy.
  reg('PadV2', (args) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs['x']!;
    const { paddings, constantValue } = args.attrs as unknown as { paddings: [number, number][]; constantValue: number };
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback('PadV2', args);
    const shape = x.shape;
    const r = shape.length;
    const outShape = shape.map((d, i) => paddings[i]![0] + d + paddings[i]![1]);
    const out = new Float32Array(tf.util.sizeFromShape(outShape));
    if (constantValue !== 0) out.fill(constantValue);
    const src = values(backend, x);
    const outStride = tf.util.computeStrides(outShape);
    const last = shape[r - 1]!;
    forEachRow(shape, (row, index) => {
      let at = paddings[r - 1]![0];
      for (let d = 0; d < r - 1; d++) at += (index[d]! + paddings[d]![0]) * outStride[d]!;
      out.set(src.subarray(row * last, row * last + last), at);
    });
    return backend.makeTensorInfo(outShape, 'float32', out);
  });
  reg('Slice', (args) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs['x']!;
    const at = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
    const shape = x.shape;
    const r = shape.length;
    if (x.dtype !== 'float32' || r < 2) return fallback('Slice', args);
    const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.TensorInfo & tf.Tensor, at.begin, at.size) as [number[], number[]];
    // A contiguous block (whole rows of everything after the first sliced dimension): tfjs's own view is free.
    if (tf.slice_util.isSliceContinous(shape, begin, size)) return fallback('Slice', args);
    const src = values(backend, x);
    const inStride = tf.util.computeStrides(shape);
    const out = new Float32Array(tf.util.sizeFromShape(size));
    const last = size[r - 1]!;
    forEachRow(size, (row, index) => {
      let from = begin[r - 1]!;
      for (let d = 0; d < r - 1; d++) from += (index[d]! + begin[d]!) * inStride[d]!;
      out.set(src.subarray(from, from + last), row * last);
    });
    return backend.makeTensorInfo(size, 'float32', out);
  });
  // Tile by block copies: each innermost run of the input is copied whole, then whole tiled blocks are repeated.
  reg('Tile', (args) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs['x']!;
    const reps = (args.attrs as unknown as { reps: number[] }).reps;
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback('Tile', args);
    const shape = x.shape;
    const outShape = shape.map((d, i) => d * reps[i]!);
    const src = values(backend, x);
    const out = new Float32Array(tf.util.sizeFromShape(outShape));
    const r = shape.length;
    const inStride = new Array<number>(r).fill(1);
    const outStride = new Array<number>(r).fill(1);
    for (let d = r - 2; d >= 0; d--) {
      inStride[d] = inStride[d + 1]! * shape[d + 1]!;
      outStride[d] = outStride[d + 1]! * outShape[d + 1]!;
    }
    // Fills out[outAt…] (one block of dimension d and below); returns nothing.
    const fill = (d: number, inAt: number, outAt: number): void => {
      if (d === r - 1) {
        const row = src.subarray(inAt, inAt + shape[d]!);
        for (let k = 0; k < reps[d]!; k++) out.set(row, outAt + k * shape[d]!);
        return;
      }
      for (let i = 0; i < shape[d]!; i++) fill(d + 1, inAt + i * inStride[d]!, outAt + i * outStride[d]!);
      const block = shape[d]! * outStride[d]!;
      for (let k = 1; k < reps[d]!; k++) out.copyWithin(outAt + k * block, outAt, outAt + block);
    };
    fill(0, 0, 0);
    return backend.makeTensorInfo(outShape, 'float32', out);
  });
  const reductions: [string, number, string][] = [['Sum', 0, 'axis'], ['Mean', 1, 'axis'], ['Max', 2, 'reductionIndices'], ['Min', 3, 'axis']];
  for (const [name, op, axisAttr] of reductions) {
    reg(name, (args) => {
      const backend = args.backend as MathBackendCPU;
      const x = args.inputs['x']!;
      const attrs = args.attrs as Record<string, unknown>;
      const keepDims = Boolean(attrs['keepDims']);
      const axes = tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape).sort((p, q) => p - q);
      const contiguous = axes.every((v, i) => v === axes[0]! + i);
      const n = tf.util.sizeFromShape(x.shape);
      if (x.dtype !== 'float32' || axes.length === 0 || n === 0 || !contiguous) return fallback(name, args);
      const reduced = tf.util.sizeFromShape(axes.map((i) => x.shape[i]!));
      const kept = n / reduced;
      const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      const out = new Float32Array(kept);
      const inner = tf.util.sizeFromShape(x.shape.slice(axes[axes.length - 1]! + 1));
      if (axes[0] === 0) a.reduce(op, values(backend, x), out, reduced, kept, true);
      else if (inner === 1) a.reduce(op, values(backend, x), out, kept, reduced, false);
      else a.reduceMiddle(op, values(backend, x), out, kept / inner, reduced, inner);
      return backend.makeTensorInfo(outShape, 'float32', out);
    });
  }
}

/** ReLU's gradient as one kernel (inputs a = dy, b = the ReLU's output y): dy·step(y) in one pass instead of three. */
export { RELU_GRAD_KERNEL };

/**
 * Data written by FUSED_BN_RELU_TRAIN_KERNEL: already rectified. A ReLU of it passes it on unchanged (no pass), and
 * that ReLU's gradient passes dy on unchanged: the kernel's own gradient applies ReLU's mask (step(y), and the mask
 * twice is the mask once), and every gradient reaching data of the kernel's output reaches the kernel's gradient.
 * (Taking a gradient with respect to that very output tensor would see the ReLU as identity; a model never does.)
 */
const rectified = new WeakSet<object>();

/**
 * Replaces tfjs-core's gradient of Relu — dy·cast(step(x)), three full passes and two allocations — by one that
 * uses {@link RELU_GRAD_KERNEL} where the active backend has it, and is tfjs's own formula elsewhere.
 */
function registerReluGradient(): void {
  tf.registerGradient({
    kernelName: 'Relu',
    // The mask from ReLU's output y, not its input: y > 0 exactly where x > 0, and NaN where x is NaN. So the input
    // need not be kept for backward (a residual sum's output, on every block), only y, which the next layer keeps anyway.
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [y] = saved as tf.Tensor[];
      const g = dy as tf.Tensor;
      if (rectified.has(y!.dataId)) return { x: () => tf.clone(g) };
      return {
        x: () =>
          tf.getKernel(RELU_GRAD_KERNEL, tf.getBackend()) && g.dtype === 'float32' && y!.dtype === 'float32' && tf.util.arraysEqual(g.shape, y!.shape)
            ? (tf.engine().runKernel(RELU_GRAD_KERNEL, { a: g, b: y! }) as tf.Tensor)
            : tf.mul(g, tf.cast(tf.step(y!), 'float32')),
      };
    },
  });
}

let registered = false;

export type NativePrecision = 'fp32' | 'bf16';

export interface NativePrecisionOptions {
  /**
   * In bf16 mode, store the activations that convolutions read next (batch norm + ReLU, a residual block's ReLU) as
   * bf16, as PyTorch's autocast does: no conversion before each convolution, half the memory for them. Default true
   * (env BYOL_NATIVE_BF16_ACTIVATIONS=0: false). The convolutions see the same values either way (they round their
   * inputs to bf16 themselves); what changes is that a residual sum reads its shortcut rounded too.
   */
  readonly bf16Activations?: boolean;
}

/**
 * Precision of the native backend's convolutions and matrix products. `bf16`: their inputs are bfloat16 (oneDNN's
 * AVX512-BF16 / AMX kernels) and their outputs float32, as PyTorch's bf16 autocast; activations that convolutions read
 * next are stored as bf16 (see {@link NativePrecisionOptions}); weights, gradients, optimizer state, batch-norm
 * statistics, the loss and the EMA stay float32 (fp32 master weights). Returns false, changing nothing, where the CPU
 * has no fast bf16 kernels or the addon is not built.
 */
export function setNativePrecision(precision: NativePrecision, options: NativePrecisionOptions = {}): boolean {
  const a = loadNativeAddon();
  if (!a) return false;
  const ok = a.setBf16(precision === 'bf16');
  if (ok) packActivations = precision === 'bf16' && (options.bf16Activations ?? process.env['BYOL_NATIVE_BF16_ACTIVATIONS'] !== '0');
  return ok;
}

/**
 * Registers the `native` backend (priority above cpu and wasm) when the addon is built. Returns whether it is
 * available. `threads` defaults to the machine's cores.
 */
export function registerNativeBackend(threads?: number): boolean {
  checkNativeEnv();
  const a = loadNativeAddon();
  if (!a) return false;
  if (threads !== undefined) a.setThreads(threads);
  if (registered) return true;
  registered = true;
  tf.registerBackend('native', () => new NativeBackend(), 3);
  registerKernels(a);
  registerElementwise(a);
  registerReluGradient();
  return true;
}
