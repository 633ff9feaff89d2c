import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';
import { ByolError } from '../src/index.js';
import { crc32, encodePng } from '../src/io/png.js';
import { writeFileAtomic } from '../src/io/atomic.js';

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('encodePng writes a valid PNG: signature, IHDR, CRCs, and the pixels back from IDAT', () => {
  const w = 3;
  const h = 2;
  const pixels = Uint8Array.from({ length: w * h * 3 }, (_, i) => i * 11);
  const png = encodePng(pixels, w, h, 3);
  assert.deepEqual(Array.from(png.subarray(0, 8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(png.buffer, png.byteOffset);
  const chunks: { type: string; data: Uint8Array }[] = [];
  for (let at = 8; at < png.length; ) {
    const len = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const data = png.subarray(at + 8, at + 8 + len);
    assert.equal(view.getUint32(at + 8 + len), crc32(png.subarray(at + 4, at + 8 + len)), `${type} CRC`);
    chunks.push({ type, data });
    at += 12 + len;
  }
  assert.deepEqual(chunks.map((c) => c.type), ['IHDR', 'IDAT', 'IEND']);
  const ihdr = new DataView(chunks[0]!.data.buffer, chunks[0]!.data.byteOffset);
  assert.deepEqual([ihdr.getUint32(0), ihdr.getUint32(4), chunks[0]!.data[8], chunks[0]!.data[9]], [w, h, 8, 2]);
  const raw = inflateSync(chunks[1]!.data);
  const rows = [];
  for (let y = 0; y < h; y++) {
    assert.equal(raw[y * (w * 3 + 1)], 0, 'filter type none');
    rows.push(...raw.subarray(y * (w * 3 + 1) + 1, (y + 1) * (w * 3 + 1)));
  }
  assert.deepEqual(rows, Array.from(pixels));
  assert.throws(() => encodePng(pixels, 4, 2, 3), (e: unknown) => e instanceof ByolError && e.option === 'pixels');
});

test('writeFileAtomic replaces the file whole and leaves no temporary file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-atomic-'));
  try {
    const path = join(dir, 'sub', 'file.bin');
    await writeFileAtomic(path, 'first');
    await writeFileAtomic(path, 'second');
    assert.equal(readFileSync(path, 'utf8'), 'second');
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['file.bin']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the views-grid example writes a PNG grid of the right size', async () => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const dir = mkdtempSync(join(tmpdir(), 'byol-grid-'));
  try {
    const out = join(dir, 'grid.png');
    const script = fileURLToPath(new URL('../examples/views-grid.js', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--out', out, '--images', '2', '--pairs', '3', '--preset', 'cifar'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const png = readFileSync(out);
    assert.deepEqual(Array.from(png.subarray(1, 4)), [0x50, 0x4e, 0x47]);
    // cifar: 32 px cells enlarged ×3 = 96; 7 columns (image + 3 pairs), 4-px gaps plus one per pair.
    assert.equal(png.readUInt32BE(16), 7 * 96 + 6 * 4 + 3 * 4);
    assert.equal(png.readUInt32BE(20), 2 * 96 + 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the views-grid example writes to the temporary folder unless told where: the repository\'s docs/views-grid.png is never overwritten', async () => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'byol-grid-'));
  try {
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'docs', 'views-grid.png'), 'the committed picture');
    const script = fileURLToPath(new URL('../examples/views-grid.js', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--images', '1', '--pairs', '1', '--preset', 'cifar'], { cwd: dir, encoding: 'utf8', timeout: 60_000, env: { ...process.env, TMPDIR: dir } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'docs', 'views-grid.png'), 'utf8'), 'the committed picture');
    assert.match(r.stdout, new RegExp(`^wrote ${join(dir, 'byol-views-grid.png').replace(/[.]/g, '\\.')}:`));
    assert.deepEqual(Array.from(readFileSync(join(dir, 'byol-views-grid.png')).subarray(1, 4)), [0x50, 0x4e, 0x47]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
