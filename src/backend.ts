import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { installWasmConvBackpropFilter, installWasmConvBackpropInput, installWasmFastTile } from './wasm-kernels.js';

/**
 * tfjs-backend-cpu prints a banner advising tfjs-node the first time it writes a tensor under Node.
 * byol brings its own backends, so the advice is wrong here: mark the banner as already shown.
 */
export function silenceCpuBanner(): void {
  // The banner only exists under Node; in a browser this must not touch (and so initialize) any backend.
  if (!tf.env().getBool('IS_NODE')) return;
  // Initialize the default backend first: the engine builds a fresh backend object when it does.
  tf.backend();
  const cpu = (tf.engine().registry as Record<string, unknown>)['cpu'] as { firstUse?: boolean } | undefined;
  if (cpu && 'firstUse' in cpu) cpu.firstUse = false;
}

silenceCpuBanner();

let wasmMatMulPatched = false;

/**
 * tfjs-backend-wasm 4.22 multiplies fast only untransposed operands: with transposeA or transposeB set —
 * as in every MatMul gradient — its BatchMatMul runs 10–25× slower (measured on this project's 2-core
 * machine: 1.4 GFLOP/s against 35 for a 128×1024·1024×512 product). This wraps the kernel so that it
 * transposes such operands explicitly first, which costs one copy. It also installs what training convolutions
 * needs of the backend: Conv2DBackpropFilter (missing), and fast Conv2DBackpropInput and Tile (see wasm-kernels.ts).
 * Call after the wasm backend is registered; calling again does nothing.
 */
export function installWasmFastPaths(): void {
  installWasmConvBackpropFilter();
  installWasmConvBackpropInput();
  installWasmFastTile();
  if (wasmMatMulPatched) return;
  const original = tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (!original || !transpose) return;
  wasmMatMulPatched = true;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return original.kernelFunc({ inputs, backend, ...(attrs ? { attrs } : {}) });
      const temporaries: tf.TensorInfo[] = [];
      const flip = (x: tf.TensorInfo): tf.TensorInfo => {
        const rank = x.shape.length;
        const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
        const t = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
        temporaries.push(t);
        return t;
      };
      const a = transposeA ? flip(inputs['a']!) : inputs['a']!;
      const b = transposeB ? flip(inputs['b']!) : inputs['b']!;
      const out = original.kernelFunc({ inputs: { a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
      for (const t of temporaries) (backend as tf.KernelBackend).disposeData(t.dataId);
      return out;
    },
  });
}
