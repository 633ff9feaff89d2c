/**
 * Writes a PNG grid that shows what BYOL's two augmentations do: one row per image, the image itself, then
 * 8 pairs of views (T, T′).
 *
 *   npm run build && node dist/examples/views-grid.js [--out FILE.png] [--preset imagenet|cifar|grey]
 *       [--cifar DIR] [--fashion] [--images 4] [--pairs 8] [--seed 0]
 *
 * It writes to the system's temporary folder unless --out names a file (docs/views-grid.png was made with
 * `--out docs/views-grid.png`; a plain run never touches the repository's files). Without a data option it draws
 * synthetic scenes (what docs/views-grid.png shows, so that no dataset is copied into the repository);
 * `--cifar ../shared/datasets/cifar10` uses CIFAR-10 test images, `--fashion` Debian's Fashion-MNIST.
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, ViewSampler, type ViewPresetName } from '../src/index.js';
import { DEBIAN_FASHION_MNIST, readIdxFile } from '../src/node.js';
import { encodePng } from '../src/io/png.js';
import { writeFileAtomic } from '../src/io/atomic.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const out = flag('out', join(tmpdir(), 'byol-views-grid.png'));
const count = Number(flag('images', '4'));
const pairs = Number(flag('pairs', '8'));
const seed = Number(flag('seed', '0'));
const cifar = args.includes('--cifar') ? flag('cifar', '') : null;
const fashion = args.includes('--fashion');
const preset = flag('preset', cifar ? 'cifar' : fashion ? 'grey' : 'imagenet') as ViewPresetName;

/** Colourful synthetic scenes: a gradient sky, a ground band, a few discs and boxes. int32 0–255, 96×96×3. */
function synthetic(n: number): tf.Tensor4D {
  const s = 96;
  const rng = new Rng(seed + 1);
  const data = new Int32Array(n * s * s * 3);
  for (let i = 0; i < n; i++) {
    const sky = [rng.int(40, 200), rng.int(80, 220), rng.int(150, 255)];
    const ground = [rng.int(30, 160), rng.int(90, 200), rng.int(20, 90)];
    const horizon = rng.int(55, 75);
    const shapes = Array.from({ length: 4 }, () => ({
      disc: rng.bernoulli(0.5),
      x: rng.int(10, 85),
      y: rng.int(10, 85),
      r: rng.int(6, 18),
      color: [rng.int(0, 255), rng.int(0, 255), rng.int(0, 255)],
    }));
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        let c = y < horizon ? sky.map((v) => Math.round(v * (0.6 + (0.4 * y) / horizon))) : ground;
        for (const sh of shapes) {
          const inside = sh.disc ? (x - sh.x) ** 2 + (y - sh.y) ** 2 <= sh.r ** 2 : Math.abs(x - sh.x) <= sh.r && Math.abs(y - sh.y) <= sh.r / 2;
          if (inside) c = sh.color;
        }
        data.set(c, ((i * s + y) * s + x) * 3);
      }
    }
  }
  return tf.tensor4d(data, [n, s, s, 3], 'int32');
}

async function cifarImages(dir: string, n: number): Promise<tf.Tensor4D> {
  const bytes = await readFile(join(dir, 'test_batch.bin'));
  const data = new Int32Array(n * 32 * 32 * 3);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) data[(i * 1024 + p) * 3 + c] = bytes[i * 3073 + 1 + c * 1024 + p]!;
  }
  return tf.tensor4d(data, [n, 32, 32, 3], 'int32');
}

async function fashionImages(n: number): Promise<tf.Tensor4D> {
  const idx = await readIdxFile(join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'));
  return tf.tensor4d(Int32Array.from(idx.data.subarray(0, n * 784)), [n, 28, 28, 1], 'int32');
}

const images = cifar ? await cifarImages(cifar, count) : fashion ? await fashionImages(count) : synthetic(count);
const sampler = new ViewSampler(preset, { seed, overrides: preset === 'imagenet' && !cifar && !fashion ? { size: 96 } : {} });
const { size, channels, mean, std } = sampler.config;
const scale = size < 64 ? 3 : 1; // small images are enlarged (nearest neighbour) to be visible
const cell = size * scale;
const gap = 4;
const cols = 1 + 2 * pairs;
const width = cols * cell + (cols - 1) * gap + pairs * gap; // extra gap between pairs
const height = count * cell + (count - 1) * gap;
const canvas = new Uint8Array(width * height * 3).fill(255);

function paint(values: Float32Array, offset: number, row: number, x0: number, denormalize: boolean): void {
  for (let y = 0; y < cell; y++) {
    for (let x = 0; x < cell; x++) {
      const p = offset + ((Math.floor(y / scale) * size + Math.floor(x / scale)) * channels);
      for (let c = 0; c < 3; c++) {
        const ch = channels === 1 ? 0 : c;
        const v = denormalize ? values[p + ch]! * std[ch]! + mean[ch]! : values[p + ch]!;
        canvas[((row * (cell + gap) + y) * width + x0 + x) * 3 + c] = Math.round(255 * Math.min(1, Math.max(0, v)));
      }
    }
  }
}

// The originals, resized to the view size.
const originals = tf.tidy(() => tf.image.resizeBilinear(tf.div(tf.cast(images, 'float32'), 255) as tf.Tensor4D, [size, size], false, true));
const orig = originals.dataSync() as Float32Array;
for (let i = 0; i < count; i++) paint(orig, i * size * size * channels, i, 0, false);
for (let k = 0; k < pairs; k++) {
  const [v1, v2] = sampler.views(images);
  const [a, b] = [v1.dataSync() as Float32Array, v2.dataSync() as Float32Array];
  for (let i = 0; i < count; i++) {
    const x0 = (1 + 2 * k) * (cell + gap) + (k + 1) * gap;
    paint(a, i * size * size * channels, i, x0, true);
    paint(b, i * size * size * channels, i, x0 + cell + gap, true);
  }
  tf.dispose([v1, v2]);
}
await writeFileAtomic(out, encodePng(canvas, width, height, 3));
console.log(`wrote ${out}: ${count} images × ${pairs} pairs (T, T′), preset ${preset}, ${size} px, seed ${seed}`);
