/**
 * Kernels tfjs-backend-wasm (4.22) lacks or runs slowly that training convolutional encoders needs (and Tile, below).
 * The convolution gradients:
 * Conv2DBackpropFilter, which it has not at all (so the wasm backend could not train a single convolution, and the
 * cpu backend's scalar loops take seconds per step), and Conv2DBackpropInput, which it runs as a plain loop (7.5 of
 * the 13 s of a CIFAR ResNet-18 step at batch 16). Both go through the backend's fast kernels (XNNPACK). Browser-safe.
 *
 * Filter: dW[fh, fw, ci, co] = Σ over images and output positions of x[n, oh·s + fh − pad, ow·s + fw − pad, ci] ·
 * dy[n, oh, ow, co]. The input is unfolded into colᵀ [FH·FW·Ci, positions] (zero where the window leaves the image)
 * and dW = colᵀ · dy [positions, Co] is one matrix product — in the filter's HWIO layout already, with no transposed
 * operand (slow on this backend). Images go in chunks so that the unfolded matrix stays under a bound.
 *
 * Input: at stride 1, dx is the convolution of dy with the filter flipped in space and its channels swapped, padded
 * by FH − 1 − top (and likewise on the other sides): one forward convolution. At other strides, dcol = dy · Wᵀ
 * [positions, FH·FW·Ci] is one matrix product, folded back into dx (each window's values added to the pixels it
 * covers).
 */
import * as tf from '@tensorflow/tfjs-core';

/** Elements of an unfolded matrix per chunk (16 M floats: 64 MB). */
let chunkElements = 16 * 1024 * 1024;

/** Sets the chunk bound (for tests, to cover several chunks with small shapes); returns the previous one. */
export function setWasmConvChunk(elements: number): number {
  const previous = chunkElements;
  chunkElements = Math.max(1, Math.floor(elements));
  return previous;
}

type Shape4 = [number, number, number, number];

/** The attributes both convolution gradients take (besides the shape of what they compute). */
interface ConvGradAttrs {
  readonly strides: [number, number] | number;
  readonly pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  readonly dataFormat: 'NHWC' | 'NCHW';
  readonly dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

interface WasmBackend extends tf.KernelBackend {
  readSync(dataId: tf.DataId): Float32Array;
  write(values: Float32Array, shape: number[], dtype: tf.DataType): tf.DataId;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
  disposeData(dataId: tf.DataId): boolean;
}

/**
 * Fills `col` ([K, M] row-major, K = FH·FW·Ci, M = the chunk's positions) from images [n0, n0 + count) of `x`.
 * Exported for its test.
 */
export function unfoldTransposed(
  x: Float32Array,
  col: Float32Array,
  c: tf.backend_util.Conv2DInfo,
  n0: number,
  count: number,
): void {
  const { inHeight: H, inWidth: W, inChannels: Ci, outHeight: OH, outWidth: OW, filterHeight: FH, filterWidth: FW, strideHeight: sh, strideWidth: sw } = c;
  const { top, left } = c.padInfo;
  const M = count * OH * OW;
  for (let fh = 0; fh < FH; fh++) {
    for (let fw = 0; fw < FW; fw++) {
      for (let ci = 0; ci < Ci; ci++) {
        const row = ((fh * FW + fw) * Ci + ci) * M;
        let m = 0;
        for (let n = n0; n < n0 + count; n++) {
          const image = n * H * W * Ci;
          for (let oh = 0; oh < OH; oh++) {
            const ih = oh * sh + fh - top;
            if (ih < 0 || ih >= H) {
              col.fill(0, row + m, row + m + OW);
              m += OW;
              continue;
            }
            const line = image + ih * W * Ci + ci;
            for (let ow = 0; ow < OW; ow++, m++) {
              const iw = ow * sw + fw - left;
              col[row + m] = iw >= 0 && iw < W ? x[line + iw * Ci]! : 0;
            }
          }
        }
      }
    }
  }
}

/** Registers Conv2DBackpropFilter for the wasm backend (once; a no-op where it exists or wasm is not registered). */
export function installWasmConvBackpropFilter(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm') || !tf.getKernel('BatchMatMul', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as ConvGradAttrs & { filterShape: Shape4 };
      if (dataFormat !== 'NHWC') throw new Error(`Conv2DBackpropFilter on wasm supports NHWC only; got ${dataFormat}`);
      const c = tf.backend_util.computeConv2DInfo(x.shape as Shape4, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const K = c.filterHeight * c.filterWidth * c.inChannels;
      const Co = c.outChannels;
      const perImage = c.outHeight * c.outWidth;
      const xs = b.readSync(x.dataId);
      const dys = b.readSync(dy.dataId);
      const sum = new Float32Array(K * Co);
      const matMul = tf.getKernel('BatchMatMul', 'wasm')!;
      const chunk = Math.max(1, Math.floor(chunkElements / Math.max(1, K * perImage)));
      for (let n0 = 0; n0 < c.batchSize; n0 += chunk) {
        const count = Math.min(chunk, c.batchSize - n0);
        const M = count * perImage;
        const col = b.makeOutput([1, K, M], 'float32');
        const dyPart = b.makeOutput([1, M, Co], 'float32');
        unfoldTransposed(xs, b.typedArrayFromHeap(col), c, n0, count);
        b.typedArrayFromHeap(dyPart).set(dys.subarray(n0 * perImage * Co, (n0 + count) * perImage * Co));
        const part = matMul.kernelFunc({ inputs: { a: col, b: dyPart }, backend, attrs: { transposeA: false, transposeB: false } }) as tf.TensorInfo;
        const values = b.typedArrayFromHeap(part);
        if (n0 === 0) sum.set(values);
        else for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + values[i]!;
        for (const t of [col, dyPart, part]) b.disposeData(t.dataId);
      }
      const out = b.makeOutput(filterShape, 'float32');
      b.typedArrayFromHeap(out).set(sum);
      return out;
    },
  });
}

/**
 * Adds each row of `dcol` ([M, K], M = the chunk's positions, K = FH·FW·Ci) into the pixels of `dx` (images
 * [n0, n0 + count)) its window covered: the transpose of unfolding. Exported for its test.
 */
export function foldAdd(dcol: Float32Array, dx: Float32Array, c: tf.backend_util.Conv2DInfo, n0: number, count: number): void {
  const { inHeight: H, inWidth: W, inChannels: Ci, outHeight: OH, outWidth: OW, filterHeight: FH, filterWidth: FW, strideHeight: sh, strideWidth: sw } = c;
  const { top, left } = c.padInfo;
  const K = FH * FW * Ci;
  let m = 0;
  for (let n = n0; n < n0 + count; n++) {
    const image = n * H * W * Ci;
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++, m++) {
        const row = m * K;
        for (let fh = 0; fh < FH; fh++) {
          const ih = oh * sh + fh - top;
          if (ih < 0 || ih >= H) continue;
          for (let fw = 0; fw < FW; fw++) {
            const iw = ow * sw + fw - left;
            if (iw < 0 || iw >= W) continue;
            const from = row + (fh * FW + fw) * Ci;
            const to = image + (ih * W + iw) * Ci;
            for (let ci = 0; ci < Ci; ci++) dx[to + ci] = dx[to + ci]! + dcol[from + ci]!;
          }
        }
      }
    }
  }
}

/** Replaces the wasm backend's Conv2DBackpropInput (a plain loop) with one on its fast kernels (once). */
export function installWasmConvBackpropInput(): void {
  const stock = tf.getKernel('Conv2DBackpropInput', 'wasm');
  const conv = tf.getKernel('Conv2D', 'wasm');
  const matMul = tf.getKernel('BatchMatMul', 'wasm');
  if (!stock || !conv || !matMul || (stock.kernelFunc as { byol?: boolean }).byol) return;
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as WasmBackend;
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as ConvGradAttrs & { inputShape: Shape4 };
    const c = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as Shape4, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
    const { filterHeight: FH, filterWidth: FW, inChannels: Ci, outChannels: Co } = c;
    const { top, bottom, left, right } = c.padInfo;
    const padding = [FH - 1 - top, FH - 1 - bottom, FW - 1 - left, FW - 1 - right];
    if (dataFormat !== 'NHWC' || padding.some((p) => p < 0)) return stock.kernelFunc({ inputs, backend, ...(attrs ? { attrs } : {}) });
    const w = b.readSync(filter.dataId);
    if (c.strideHeight === 1 && c.strideWidth === 1) {
      // The flipped filter with its channels swapped: [FH, FW, Co, Ci].
      const flipped = new Float32Array(w.length);
      for (let fh = 0; fh < FH; fh++) {
        for (let fw = 0; fw < FW; fw++) {
          const src = ((FH - 1 - fh) * FW + (FW - 1 - fw)) * Ci * Co;
          const dst = (fh * FW + fw) * Co * Ci;
          for (let ci = 0; ci < Ci; ci++) for (let co = 0; co < Co; co++) flipped[dst + co * Ci + ci] = w[src + ci * Co + co]!;
        }
      }
      const f: tf.TensorInfo = { dataId: b.write(flipped, [FH, FW, Co, Ci], 'float32'), shape: [FH, FW, Co, Ci], dtype: 'float32' };
      const explicit: tf.backend_util.ExplicitPadding = [[0, 0], [padding[0]!, padding[1]!], [padding[2]!, padding[3]!], [0, 0]];
      const out = conv.kernelFunc({ inputs: { x: dy, filter: f }, backend, attrs: { strides: 1, pad: explicit, dataFormat: 'NHWC', dilations: 1 } }) as tf.TensorInfo;
      b.disposeData(f.dataId);
      return out;
    }
    // Strided: dcol = dy · Wᵀ, folded back, in chunks of images.
    const K = FH * FW * Ci;
    const perImage = c.outHeight * c.outWidth;
    const dys = b.readSync(dy.dataId);
    const dx = new Float32Array(inputShape[0] * inputShape[1] * inputShape[2] * inputShape[3]);
    const wInfo: tf.TensorInfo = { dataId: b.write(w, [1, K, Co], 'float32'), shape: [1, K, Co], dtype: 'float32' };
    const chunk = Math.max(1, Math.floor(chunkElements / Math.max(1, K * perImage)));
    for (let n0 = 0; n0 < c.batchSize; n0 += chunk) {
      const count = Math.min(chunk, c.batchSize - n0);
      const M = count * perImage;
      const dyPart = b.makeOutput([1, M, Co], 'float32');
      b.typedArrayFromHeap(dyPart).set(dys.subarray(n0 * perImage * Co, (n0 + count) * perImage * Co));
      const dcol = matMul.kernelFunc({ inputs: { a: dyPart, b: wInfo }, backend, attrs: { transposeA: false, transposeB: true } }) as tf.TensorInfo;
      foldAdd(b.typedArrayFromHeap(dcol), dx, c, n0, count);
      b.disposeData(dyPart.dataId);
      b.disposeData(dcol.dataId);
    }
    b.disposeData(wInfo.dataId);
    const out = b.makeOutput(inputShape, 'float32');
    b.typedArrayFromHeap(out).set(dx);
    return out;
  };
  (kernelFunc as { byol?: boolean }).byol = true;
  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  tf.registerKernel({ kernelName: 'Conv2DBackpropInput', backendName: 'wasm', kernelFunc });
}

/**
 * Replaces the wasm backend's Tile (an element-by-element loop: 135 ms to spread 32 batch-norm scales over a
 * 64×28×28 batch, the largest cost of a ConvNet step's gradient) with row copies: each run of the last axis is
 * copied from its source row, then repeated (once).
 */
export function installWasmFastTile(): void {
  const stock = tf.getKernel('Tile', 'wasm');
  if (!stock || (stock.kernelFunc as { byol?: boolean }).byol) return;
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as WasmBackend;
    const { x } = inputs as { x: tf.TensorInfo };
    const { reps } = attrs as unknown as { reps: number[] };
    if (x.dtype !== 'float32' || x.shape.length === 0) return stock.kernelFunc({ inputs, backend, ...(attrs ? { attrs } : {}) });
    const shape = x.shape;
    const rank = shape.length;
    const outShape = shape.map((d, i) => d * reps[i]!);
    const src = b.readSync(x.dataId);
    const out = b.makeOutput(outShape, 'float32');
    const dst = b.typedArrayFromHeap(out);
    const last = shape[rank - 1]!;
    const rowLength = outShape[rank - 1]!;
    const rows = dst.length / Math.max(1, rowLength);
    // The source row of each output row: its index in every leading axis, modulo the input's size there.
    const index = new Array<number>(rank - 1).fill(0);
    for (let r = 0; r < rows; r++) {
      let from = 0;
      for (let a = 0; a < rank - 1; a++) from = from * shape[a]! + (index[a]! % shape[a]!);
      const row = src.subarray(from * last, from * last + last);
      for (let k = 0, at = r * rowLength; k < reps[rank - 1]!; k++, at += last) dst.set(row, at);
      for (let a = rank - 2; a >= 0; a--) {
        if (++index[a]! < outShape[a]!) break;
        index[a] = 0;
      }
    }
    return out;
  };
  (kernelFunc as { byol?: boolean }).byol = true;
  tf.unregisterKernel('Tile', 'wasm');
  tf.registerKernel({ kernelName: 'Tile', backendName: 'wasm', kernelFunc });
}
