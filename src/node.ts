/**
 * byol for Node: everything in the main entry, plus backend set-up and file helpers that need Node.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from './errors.js';
import { installWasmFastPaths, silenceCpuBanner } from './backend.js';

export * from './index.js';
export { parseIdx, type IdxArray } from './data/idx.js';
export { readIdxFile, findOfflineGreyDataset, DEBIAN_FASHION_MNIST, type IdxDatasetFiles } from './data/files.js';
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

export { batches, epochOrder, batchCount, checkRecordSize, type ImageBatch, type ImageSource, type BatchOptions } from './data/source.js';
export { cifar10, cifar100, stl10, CIFAR10_CLASSES, type Split, type Stl10Split } from './data/binary.js';
export { idxSource, FASHION_MNIST_CLASSES } from './data/idx-source.js';
export { imageFolder, IMAGE_EXTENSIONS, type FolderOptions, type FolderSource, type SkippedFile } from './data/folder.js';
export { download, downloadDataset, extractTarGz, DATASET_FILES, type DownloadOptions, type DatasetFile } from './data/download.js';
export { parseDatasetSpec, openDataset, DATASET_KINDS, type DatasetSpec, type DatasetKind, type DatasetSplit, type OpenDatasetOptions } from './data/spec.js';
