/**
 * ONNX export of an encoder (opset 13, NCHW): byol's ResNets and ConvNet, and tfjs models made of the same layers —
 * Conv2D, ZeroPadding2D, BatchNormalization, ReLU, MaxPooling2D, Add, GlobalAveragePooling2D, Flatten, Dense, Dropout.
 * The file takes images in [0, 1] as [N, C, H, W] and normalizes them inside ((x − mean) / std, the first two nodes),
 * so it needs no preprocessing beyond scaling bytes by 1/255. Written with a small protobuf encoder of our own (the
 * few ONNX messages it needs). Browser-safe.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';

// ---- protobuf: varints, tags, length-delimited fields. Chunks are kept as they are (weights run to hundreds of MB)
// and joined once.
class Proto {
  private readonly parts: Uint8Array[] = [];
  private length = 0;
  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }
  private varint(v: number | bigint): void {
    const out: number[] = [];
    let x = BigInt.asUintN(64, BigInt(v));
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) byte |= 0x80;
      out.push(byte);
    } while (x > 0n);
    this.push(Uint8Array.from(out));
  }
  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }
  raw(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }
  str(field: number, s: string): this {
    return this.raw(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Proto): this {
    return this.raw(field, m.done());
  }
  done(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

const FLOAT = 1; // TensorProto.DataType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

function tensorProto(name: string, dims: readonly number[], data: Float32Array): Proto {
  const t = new Proto();
  for (const d of dims) t.int(1, d);
  t.int(2, FLOAT).str(8, name);
  return t.raw(9, new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
}

function valueInfo(name: string, dims: readonly (number | string)[]): Proto {
  const shape = new Proto();
  for (const d of dims) shape.msg(1, typeof d === 'number' ? new Proto().int(1, d) : new Proto().str(2, d));
  return new Proto().str(1, name).msg(2, new Proto().msg(1, new Proto().int(1, FLOAT).msg(2, shape)));
}

type Attr = number | readonly number[] | { readonly float: number };

function node(op: string, inputs: readonly string[], outputs: readonly string[], name: string, attrs: Readonly<Record<string, Attr>> = {}): Proto {
  const n = new Proto();
  for (const i of inputs) n.str(1, i);
  for (const o of outputs) n.str(2, o);
  n.str(3, name).str(4, op);
  for (const [k, v] of Object.entries(attrs)) {
    const a = new Proto().str(1, k);
    if (typeof v === 'number') a.int(3, v).int(20, ATTR_INT);
    else if (Array.isArray(v)) {
      for (const x of v as readonly number[]) a.int(8, x);
      a.int(20, ATTR_INTS);
    } else a.float(2, (v as { float: number }).float).int(20, ATTR_FLOAT);
    n.msg(5, a);
  }
  return n;
}

/** HWIO → OIHW. */
function oihw(v: Float32Array, [h, w, i, o]: readonly number[]): Float32Array {
  const out = new Float32Array(v.length);
  for (let a = 0; a < h!; a++) for (let b = 0; b < w!; b++) for (let c = 0; c < i!; c++) for (let d = 0; d < o!; d++) out[((d * i! + c) * h! + a) * w! + b] = v[((a * w! + b) * i! + c) * o! + d]!;
  return out;
}

/** TensorFlow's "SAME" padding of one dimension: [before, after]. */
function samePads(size: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const k = (kernel - 1) * dilation + 1;
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export interface OnnxOptions {
  /** Per-channel mean and std the model's input is normalized with (applied inside the graph). */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly producer?: string;
}

const pair = (v: number | readonly number[] | undefined, fallback: number): [number, number] =>
  v === undefined ? [fallback, fallback] : typeof v === 'number' ? [v, v] : [v[0]!, v[1] ?? v[0]!];

/**
 * The model (images [N, H, W, C] → features) as an ONNX file: input `image` [N, C, H, W] in [0, 1], output
 * `features` [N, D]. A layer outside the supported set is an error naming it.
 */
export async function exportOnnx(source: tfl.LayersModel, options: OnnxOptions): Promise<Uint8Array> {
  // A fresh copy from the topology: every layer with one inbound node (an encoder used inside a learner has more).
  const model = await tfl.models.modelFromJSON({ modelTopology: source.toJSON(null, false) as never });
  model.setWeights(source.getWeights());
  try {
    const nodes: Proto[] = [];
    const inits: Proto[] = [];
    const inShape = model.inputs[0]!.shape;
    const [H, W, C] = [inShape[1]!, inShape[2]!, inShape[3]!];
    if (!(H && W && C)) throw new ByolError('INVALID_ENCODER', 'ONNX export needs a model with a fixed input size', 'encoder');
    if (options.mean.length !== C || options.std.length !== C) throw new ByolError('INVALID_OPTION', `mean and std need ${C} values`, 'mean');
    inits.push(tensorProto('input_mean', [1, C, 1, 1], Float32Array.from(options.mean)), tensorProto('input_std', [1, C, 1, 1], Float32Array.from(options.std)));
    nodes.push(node('Sub', ['image', 'input_mean'], ['image_centered'], 'normalize_sub'), node('Div', ['image_centered', 'input_std'], ['image_normalized'], 'normalize_div'));
    // Per layer: its output's name and NCHW shape; pending zero padding (top, left, bottom, right), folded into the
    // next window.
    type Flow = { name: string; shape: number[]; pads?: [number, number, number, number] };
    const outputs = new Map<string, Flow>();
    const id = (s: string) => s.replace(/[^A-Za-z0-9_.\-/]/g, '_');
    let last = '';
    for (const layer of model.layers) {
      const cls = layer.getClassName();
      const cfg = layer.getConfig() as Record<string, unknown>;
      if (cls === 'InputLayer') {
        outputs.set(layer.name, { name: 'image_normalized', shape: [0, C, H, W] });
        last = layer.name;
        continue;
      }
      const input: Flow = { name: 'image_normalized', shape: [0, C, H, W] };
      const inbound = (layer.inboundNodes[0]?.inboundLayers ?? []).map((l) => outputs.get(l.name) ?? (l.getClassName() === 'InputLayer' ? input : undefined));
      if (inbound.length === 0 || inbound.some((x) => x === undefined)) throw new ByolError('INVALID_ENCODER', `ONNX export: layer ${layer.name} has inputs it cannot follow`, 'encoder');
      const x = inbound[0]!;
      const out = id(layer.name);
      const weights = layer.getWeights().map((t) => ({ shape: t.shape, data: t.dataSync() as Float32Array }));
      let shape = x.shape;
      switch (cls) {
        case 'ZeroPadding2D': {
          const p = cfg['padding'] as [[number, number], [number, number]];
          const [[t, b], [l, r]] = p;
          outputs.set(layer.name, { name: x.name, shape: [shape[0]!, shape[1]!, shape[2]! + t + b, shape[3]! + l + r], pads: [t, l, b, r] });
          last = layer.name;
          continue;
        }
        case 'Conv2D': {
          const [kh, kw, ci, co] = weights[0]!.shape as [number, number, number, number];
          const [sh, sw] = pair(cfg['strides'] as number[], 1);
          const [dh, dw] = pair(cfg['dilationRate'] as number[], 1);
          const p = x.pads ?? (cfg['padding'] === 'same' ? (() => {
            const [t, b] = samePads(shape[2]!, kh, sh, dh);
            const [l, r] = samePads(shape[3]!, kw, sw, dw);
            return [t, l, b, r] as [number, number, number, number];
          })() : [0, 0, 0, 0]);
          inits.push(tensorProto(`${out}.weight`, [co, ci, kh, kw], oihw(weights[0]!.data, [kh, kw, ci, co])));
          const ins = [x.name, `${out}.weight`];
          if (weights[1]) {
            inits.push(tensorProto(`${out}.bias`, [co], weights[1].data));
            ins.push(`${out}.bias`);
          }
          nodes.push(node('Conv', ins, [out], out, { kernel_shape: [kh, kw], strides: [sh, sw], dilations: [dh, dw], pads: [p[0], p[1], p[2], p[3]] }));
          const inH = shape[2]! + (x.pads ? 0 : p[0] + p[2]);
          const inW = shape[3]! + (x.pads ? 0 : p[1] + p[3]);
          const oh = Math.floor((inH - ((kh - 1) * dh + 1)) / sh) + 1;
          const ow = Math.floor((inW - ((kw - 1) * dw + 1)) / sw) + 1;
          shape = [shape[0]!, co, oh, ow];
          if (cfg['activation'] && cfg['activation'] !== 'linear') throw new ByolError('INVALID_ENCODER', `ONNX export: ${layer.name} has a fused ${String(cfg['activation'])} activation`, 'encoder');
          break;
        }
        case 'BatchNormalization': {
          const [gamma, beta, mean, variance] = weights;
          if (!gamma || !beta || !mean || !variance) throw new ByolError('INVALID_ENCODER', `ONNX export: ${layer.name} needs scale and center`, 'encoder');
          for (const [k, v] of [['weight', gamma], ['bias', beta], ['running_mean', mean], ['running_var', variance]] as const) inits.push(tensorProto(`${out}.${k}`, v.shape, v.data));
          nodes.push(node('BatchNormalization', [x.name, `${out}.weight`, `${out}.bias`, `${out}.running_mean`, `${out}.running_var`], [out], out, { epsilon: { float: cfg['epsilon'] as number } }));
          break;
        }
        case 'ReLU':
        case 'Activation':
          if (cls === 'Activation' && cfg['activation'] !== 'relu') throw new ByolError('INVALID_ENCODER', `ONNX export: activation ${String(cfg['activation'])} of ${layer.name}`, 'encoder');
          nodes.push(node('Relu', [x.name], [out], out));
          break;
        case 'MaxPooling2D': {
          const [kh, kw] = pair(cfg['poolSize'] as number[], 2);
          const [sh, sw] = pair(cfg['strides'] as number[] | undefined, kh);
          const p = x.pads ?? (cfg['padding'] === 'same' ? (() => {
            const [t, b] = samePads(shape[2]!, kh, sh);
            const [l, r] = samePads(shape[3]!, kw, sw);
            return [t, l, b, r] as [number, number, number, number];
          })() : [0, 0, 0, 0]);
          nodes.push(node('MaxPool', [x.name], [out], out, { kernel_shape: [kh, kw], strides: [sh, sw], pads: [p[0], p[1], p[2], p[3]] }));
          const inH = shape[2]! + (x.pads ? 0 : p[0] + p[2]);
          const inW = shape[3]! + (x.pads ? 0 : p[1] + p[3]);
          shape = [shape[0]!, shape[1]!, Math.floor((inH - kh) / sh) + 1, Math.floor((inW - kw) / sw) + 1];
          break;
        }
        case 'Add':
          nodes.push(node('Add', inbound.map((i) => i!.name), [out], out));
          break;
        case 'GlobalAveragePooling2D':
          nodes.push(node('GlobalAveragePool', [x.name], [`${out}.pooled`], `${out}.pool`), node('Flatten', [`${out}.pooled`], [out], out, { axis: 1 }));
          shape = [shape[0]!, shape[1]!];
          break;
        case 'Flatten':
          if (shape.length === 4 && !(shape[2] === 1 && shape[3] === 1)) {
            // tfjs flattens NHWC: go back to channels-last first, so that the features keep their order.
            nodes.push(node('Transpose', [x.name], [`${out}.nhwc`], `${out}.transpose`, { perm: [0, 2, 3, 1] }), node('Flatten', [`${out}.nhwc`], [out], out, { axis: 1 }));
          } else nodes.push(node('Flatten', [x.name], [out], out, { axis: 1 }));
          shape = [shape[0]!, shape.slice(1).reduce((a, b) => a * b, 1)];
          break;
        case 'Dense': {
          const [din, dout] = weights[0]!.shape as [number, number];
          inits.push(tensorProto(`${out}.weight`, [din, dout], weights[0]!.data));
          const ins = [x.name, `${out}.weight`];
          if (weights[1]) {
            inits.push(tensorProto(`${out}.bias`, [dout], weights[1].data));
            ins.push(`${out}.bias`);
          }
          nodes.push(node('Gemm', ins, [out], out));
          if (cfg['activation'] && cfg['activation'] !== 'linear') throw new ByolError('INVALID_ENCODER', `ONNX export: ${layer.name} has a fused ${String(cfg['activation'])} activation`, 'encoder');
          shape = [shape[0]!, dout];
          break;
        }
        case 'Dropout':
          nodes.push(node('Identity', [x.name], [out], out));
          break;
        default:
          throw new ByolError('INVALID_ENCODER', `ONNX export: layer ${layer.name} (${cls}) is not supported (Conv2D, BatchNormalization, ReLU, pooling, Add, Dense are)`, 'encoder');
      }
      outputs.set(layer.name, { name: out, shape });
      last = layer.name;
    }
    const final = outputs.get(model.outputs[0]!.sourceLayer.name) ?? outputs.get(last)!;
    nodes.push(node('Identity', [final.name], ['features'], 'features'));
    const graph = new Proto();
    for (const n of nodes) graph.msg(1, n);
    graph.str(2, model.name || 'encoder');
    for (const t of inits) graph.msg(5, t);
    graph.msg(11, valueInfo('image', ['batch', C, H, W]));
    graph.msg(12, valueInfo('features', ['batch', final.shape[1]!]));
    return new Proto()
      .int(1, 7) // IR version 7 (ONNX 1.8+), with opset 13
      .str(2, options.producer ?? 'byol')
      .msg(7, graph)
      .msg(8, new Proto().str(1, '').int(2, 13))
      .done();
  } finally {
    model.dispose();
  }
}
