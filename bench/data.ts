/**
 * Benchmark: images per second delivered by the data pipeline (read, decode, resize, batch, prefetch).
 *
 *   npm run build && node dist/bench/data.js [--cifar ../shared/datasets/cifar10] [--jpegs 5000]
 *
 * 1. CIFAR-10 training set (binary version), shuffled batches of 256.
 * 2. A folder of N generated 320×240 JPEGs (written once to a temporary folder, in 10 class sub-folders), decoded
 *    and resized to 224×224 by sharp, shuffled batches of 64.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { batches, cifar10, imageFolder, type ImageSource } from '../src/node.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const cifarDir = arg('cifar', new URL('../../../shared/datasets/cifar10', import.meta.url).pathname);
const jpegs = Number(arg('jpegs', '5000'));

async function rate(source: ImageSource, batchSize: number, limit = Infinity): Promise<{ images: number; secs: number }> {
  const t0 = performance.now();
  let images = 0;
  for await (const b of batches(source, { batchSize, seed: 1, prefetch: 2 })) {
    images += b.shape[0];
    if (images >= limit) break;
  }
  return { images, secs: (performance.now() - t0) / 1000 };
}

console.log(`cores: ${cpus().length}; sharp (libvips) threads: ${sharp.concurrency()}`);
if (existsSync(cifarDir)) {
  const t0 = performance.now();
  const source = await cifar10(cifarDir, 'train');
  const open = (performance.now() - t0) / 1000;
  const r = await rate(source, 256);
  console.log(`CIFAR-10 train, batches of 256: ${r.images} images in ${r.secs.toFixed(2)} s = ${(r.images / r.secs).toFixed(0)} images/s (+ ${open.toFixed(2)} s to open)`);
} else console.log(`CIFAR-10: skipped (no ${cifarDir})`);

const dir = mkdtempSync(join(tmpdir(), 'byol-jpegs-'));
try {
  const t0 = performance.now();
  for (let c = 0; c < 10; c++) mkdirSync(join(dir, `class${c}`));
  const noise = Buffer.alloc(320 * 240 * 3);
  for (let i = 0; i < jpegs; i += 1) {
    for (let k = 0; k < noise.length; k += 3) {
      noise[k] = (k * 7 + i * 13) & 255;
      noise[k + 1] = ((k >> 5) + i) & 255;
      noise[k + 2] = (k * i) & 255;
    }
    await sharp(noise, { raw: { width: 320, height: 240, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(dir, `class${i % 10}`, `${i}.jpg`));
  }
  console.log(`generated ${jpegs} JPEGs (320×240) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const source = await imageFolder(dir, { size: 224 });
  const r = await rate(source, 64);
  console.log(`JPEG folder → 224×224, batches of 64: ${r.images} images in ${r.secs.toFixed(2)} s = ${(r.images / r.secs).toFixed(0)} images/s`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
