/**
 * Weights between a tfjs model whose layers carry PyTorch names (byol's ResNets: `conv1`, `bn1`, `layer1.0.conv1`,
 * `layer1.0.downsample.1`, …) and a PyTorch state dict: convolution kernels HWIO ↔ OIHW, dense kernels [in, out] ↔
 * Linear's [out, in], batch norm's γ, β, moving mean and variance ↔ weight, bias, running_mean, running_var.
 * Browser-safe: plain arrays in, plain arrays out.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';

/** A tensor in PyTorch's layout. */
export interface TorchArray {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** One tfjs weight and the PyTorch key and layout it corresponds to. */
interface Slot {
  readonly key: string;
  readonly variable: tfl.LayerVariable;
  /** tfjs shape → PyTorch shape and back. */
  readonly layout: 'hwio' | 'dense' | 'vector';
}

/** How a layer is named in PyTorch: its own name (byol's ResNets carry torchvision's), or by position. */
export type TorchNaming = 'name' | 'index';

function slots(model: tfl.LayersModel, naming: TorchNaming = 'name'): Slot[] {
  const out: Slot[] = [];
  // By position, as an nn.Sequential numbers its children (byol's heads: 0 Linear, 1 BatchNorm1d, 2 ReLU, 3 Linear).
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  for (const [i, layer] of layers.entries()) {
    const cls = layer.getClassName();
    const w = layer.weights;
    const name = naming === 'index' ? String(i) : layer.name;
    if (cls === 'Conv2D') {
      out.push({ key: `${name}.weight`, variable: w[0]! as tfl.LayerVariable, layout: 'hwio' });
      if (w[1]) out.push({ key: `${name}.bias`, variable: w[1] as tfl.LayerVariable, layout: 'vector' });
    } else if (cls === 'Dense') {
      out.push({ key: `${name}.weight`, variable: w[0]! as tfl.LayerVariable, layout: 'dense' });
      if (w[1]) out.push({ key: `${name}.bias`, variable: w[1] as tfl.LayerVariable, layout: 'vector' });
    } else if (cls === 'BatchNormalization') {
      // tfjs orders them gamma, beta, moving mean, moving variance (scale and center on, as byol builds them).
      const names = ['weight', 'bias', 'running_mean', 'running_var'];
      w.forEach((v, k) => out.push({ key: `${name}.${names[k]}`, variable: v as tfl.LayerVariable, layout: 'vector' }));
    } else if (w.length > 0) {
      throw new ByolError('INVALID_ENCODER', `layer ${layer.name} (${cls}) has weights with no PyTorch counterpart here`, 'encoder');
    }
  }
  return out;
}

/** HWIO [h, w, i, o] → OIHW [o, i, h, w]. */
function hwioToOihw(v: Float32Array, [h, w, i, o]: readonly number[]): Float32Array {
  const out = new Float32Array(v.length);
  for (let a = 0; a < h!; a++) for (let b = 0; b < w!; b++) for (let c = 0; c < i!; c++) for (let d = 0; d < o!; d++) out[((d * i! + c) * h! + a) * w! + b] = v[((a * w! + b) * i! + c) * o! + d]!;
  return out;
}

function oihwToHwio(v: Float32Array, [o, i, h, w]: readonly number[]): Float32Array {
  const out = new Float32Array(v.length);
  for (let d = 0; d < o!; d++) for (let c = 0; c < i!; c++) for (let a = 0; a < h!; a++) for (let b = 0; b < w!; b++) out[((a * w! + b) * i! + c) * o! + d] = v[((d * i! + c) * h! + a) * w! + b]!;
  return out;
}

function transpose2d(v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = v[r * cols + c]!;
  return out;
}

/** A weight's shape (layers are built, so every dimension is known). */
const shapeOf = (s: Slot): number[] => s.variable.shape.map((d) => d ?? 0);

const torchShape = (s: Slot): number[] => {
  const shape = shapeOf(s);
  return s.layout === 'hwio' ? [shape[3]!, shape[2]!, shape[0]!, shape[1]!] : s.layout === 'dense' ? [shape[1]!, shape[0]!] : [...shape];
};

/**
 * Whether the model pads as TensorFlow ("SAME") where PyTorch's layers cannot: a window larger than 1 at stride 2
 * (SAME pads 0 before and 1 after an even input, PyTorch (k − 1) / 2 on both sides). Such a model's weights load into
 * torchvision, but its features there differ slightly from byol's.
 */
export function padsAsTensorFlow(model: tfl.LayersModel): boolean {
  return model.layers.some((layer) => {
    const c = layer.getConfig() as { padding?: unknown; strides?: unknown; kernelSize?: unknown; poolSize?: unknown };
    if (c.padding !== 'same') return false;
    const list = (v: unknown) => (Array.isArray(v) ? (v as number[]) : typeof v === 'number' ? [v] : []);
    return list(c.strides).some((x) => x > 1) && list(c.kernelSize ?? c.poolSize).some((x) => x > 1);
  });
}

/** The model's weights under their PyTorch keys (each with `prefix`), in PyTorch's layouts. */
export function torchStateOf(model: tfl.LayersModel, naming: TorchNaming = 'name', prefix = '', out = new Map<string, TorchArray>()): Map<string, TorchArray> {
  for (const s of slots(model, naming)) {
    const v = s.variable.read().dataSync() as Float32Array;
    const shape = shapeOf(s);
    const data = s.layout === 'hwio' ? hwioToOihw(v, shape) : s.layout === 'dense' ? transpose2d(v, shape[0]!, shape[1]!) : Float32Array.from(v);
    out.set(prefix + s.key, { shape: torchShape(s), data });
  }
  return out;
}

export interface TorchLoadReport {
  /** Keys of the model that were set. */
  readonly mapped: readonly string[];
  /** Keys of the model the state dict lacks (their weights keep their initial values). */
  readonly missing: readonly string[];
}

/**
 * Sets the model's weights from PyTorch arrays by key. A key the state dict lacks is reported (`missing`); a shape
 * that differs is an error naming the key and both shapes.
 */
export function loadTorchState(model: tfl.LayersModel, state: ReadonlyMap<string, TorchArray>, what = 'the state dict', naming: TorchNaming = 'name', prefix = ''): TorchLoadReport {
  const mapped: string[] = [];
  const missing: string[] = [];
  for (const slot of slots(model, naming)) {
    const s = { ...slot, key: prefix + slot.key };
    const t = state.get(s.key);
    if (!t) {
      missing.push(s.key);
      continue;
    }
    const want = torchShape(s);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new ByolError('INVALID_STATE', `${what}: ${s.key} has shape [${t.shape}], the model needs [${want}]`, s.key);
    }
    const shape = shapeOf(s);
    const data = s.layout === 'hwio' ? oihwToHwio(t.data, t.shape) : s.layout === 'dense' ? transpose2d(t.data, t.shape[0]!, t.shape[1]!) : t.data;
    const value = tf.tensor(data, shape, 'float32');
    s.variable.write(value);
    value.dispose();
    mapped.push(s.key);
  }
  return { mapped, missing };
}

/**
 * The model's weights as tf.Variables (the backing variables the learner trains), each with its PyTorch key (with
 * `prefix`) and a converter of values in the variable's layout to PyTorch's: to name optimizer slots, which hold one
 * array per trainable variable, as PyTorch names its parameters.
 */
export function torchKeyedVariables(model: tfl.LayersModel, naming: TorchNaming = 'name', prefix = ''): { key: string; variable: tf.Variable; shape: number[]; toTorch: (v: Float32Array) => Float32Array; fromTorch: (v: Float32Array) => Float32Array }[] {
  return slots(model, naming).map((s) => {
    const shape = shapeOf(s);
    const tshape = torchShape(s);
    return {
      key: prefix + s.key,
      variable: s.variable.read() as tf.Variable,
      shape: tshape,
      toTorch: (v: Float32Array) => (s.layout === 'hwio' ? hwioToOihw(v, shape) : s.layout === 'dense' ? transpose2d(v, shape[0]!, shape[1]!) : Float32Array.from(v)),
      fromTorch: (v: Float32Array) => (s.layout === 'hwio' ? oihwToHwio(v, tshape) : s.layout === 'dense' ? transpose2d(v, tshape[0]!, tshape[1]!) : Float32Array.from(v)),
    };
  });
}

/** The PyTorch keys a model's weights take. */
export function torchKeysOf(model: tfl.LayersModel): string[] {
  return slots(model).map((s) => s.key);
}
