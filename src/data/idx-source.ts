import { classCount } from '../eval/labels.js';
import { ByolError } from '../errors.js';
import { readIdxFile } from './files.js';
import { batchOf } from './binary.js';
import type { ImageSource } from './source.js';

/**
 * Images and labels in IDX files (MNIST, Fashion-MNIST, gzipped or raw): images [N, H, W] or [N, H, W, C] bytes,
 * labels [N]. Errors name the file and what is wrong.
 */
export async function idxSource(
  name: string,
  imagesPath: string,
  labelsPath: string | null,
  classes: readonly string[] | null = null,
  expected: { readonly count: number; readonly height: number; readonly width: number } | null = null,
): Promise<ImageSource> {
  const images = await readIdxFile(imagesPath);
  if (images.shape.length !== 3 && images.shape.length !== 4) {
    throw new ByolError('INVALID_DATA', `${imagesPath}: IDX images must have dimensions [N, H, W] or [N, H, W, C]; got [${images.shape}]`, imagesPath);
  }
  const [n, h, w, c = 1] = images.shape as [number, number, number, number?];
  if (expected && (n !== expected.count || h !== expected.height || w !== expected.width || c !== 1)) {
    throw new ByolError(
      'INVALID_DATA',
      `${imagesPath}: holds [${images.shape}] images; ${name} has ${expected.count.toLocaleString('en-US')} of ${expected.height}×${expected.width} (a cut or different file?)`,
      imagesPath,
    );
  }
  let labels: Uint8Array | null = null;
  if (labelsPath !== null) {
    const l = await readIdxFile(labelsPath);
    if (l.shape.length !== 1 || l.shape[0] !== n) {
      throw new ByolError('INVALID_DATA', `${labelsPath}: IDX labels must have dimensions [${n}] to match ${imagesPath}; got [${l.shape}]`, labelsPath);
    }
    labels = l.data;
  }
  const numClasses = labels ? classCount(labels) : 0;
  const size = h * w * c;
  return {
    name,
    length: n,
    imageShape: [h, w, c],
    classes: labels ? (classes ?? Array.from({ length: numClasses }, (_, i) => String(i))) : null,
    async read(indices) {
      const out = new Uint8Array(indices.length * size);
      const lab = labels ? new Int32Array(indices.length) : null;
      indices.forEach((i, k) => {
        if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new ByolError('INVALID_INPUT', `${name}: index ${i} is out of range [0, ${n})`, 'indices');
        out.set(images.data.subarray(i * size, (i + 1) * size), k * size);
        if (lab) lab[k] = labels![i]!;
      });
      return batchOf(out, [indices.length, h, w, c], lab, indices, name);
    },
    close: async () => undefined,
  };
}

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
