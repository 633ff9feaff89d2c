import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ByolError, download, downloadDataset, extractTarGz } from '../src/node.js';

/** A ustar archive of the given files (written here, independently of the extractor). */
function tar(files: Record<string, Buffer>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, data] of Object.entries(files)) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const payload = gzipSync(tar({ 'cifar-10-batches-bin/data_batch_1.bin': Buffer.alloc(3073, 7), 'cifar-10-batches-bin/readme.html': Buffer.from('<p>hi</p>') }));
const big = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 31) % 251));
const ranges: string[] = [];
let server: http.Server;
let base = '';
let dropNext = true;

before(async () => {
  server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (url === '/good.tar.gz' || url === '/bad.bin') {
      res.writeHead(200, { 'Content-Length': payload.length });
      res.end(payload);
    } else if (url === '/redirect') {
      res.writeHead(302, { Location: '/good.tar.gz' });
      res.end();
    } else if (url === '/drop.bin') {
      const range = req.headers.range;
      ranges.push(range ?? 'none');
      const from = range ? Number(/bytes=(\d+)-/.exec(range)![1]) : 0;
      const body = big.subarray(from);
      res.writeHead(from ? 206 : 200, { 'Content-Length': body.length, ...(from ? { 'Content-Range': `bytes ${from}-${big.length - 1}/${big.length}` } : {}) });
      if (dropNext) {
        dropNext = false;
        res.write(body.subarray(0, 70_000), () => res.destroy()); // the connection drops mid-file
      } else res.end(body);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

test('download: checksum verified, written atomically, no partial file left', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-dl-'));
  try {
    const dest = join(dir, 'sub', 'good.tar.gz');
    await download(`${base}/redirect`, dest, { checksum: md5(payload) });
    assert.deepEqual(readFileSync(dest), payload);
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['good.tar.gz']);
    // Already there and right: kept without a request (the server would now fail it).
    await download(`${base}/missing`, dest, { checksum: md5(payload) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('download: a wrong checksum is refused and nothing stays under either name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-dl-'));
  try {
    const dest = join(dir, 'bad.bin');
    await assert.rejects(download(`${base}/bad.bin`, dest, { checksum: '0'.repeat(32) }), (e: unknown) => e instanceof ByolError && e.code === 'CHECKSUM_MISMATCH' && /bad\.bin/.test((e as Error).message));
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('download: a connection dropped mid-file keeps the part, and the next call resumes with a Range request', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-dl-'));
  try {
    const dest = join(dir, 'drop.bin');
    await assert.rejects(download(`${base}/drop.bin`, dest, { checksum: md5(big) }), (e: unknown) => e instanceof ByolError && e.code === 'DOWNLOAD_FAILED' && /resume/.test((e as Error).message));
    assert.equal(existsSync(dest), false, 'no half file under the final name');
    const partial = statSync(`${dest}.part`).size;
    assert.ok(partial > 0 && partial < big.length, `kept ${partial} bytes`);
    await download(`${base}/drop.bin`, dest, { checksum: md5(big) });
    assert.deepEqual(readFileSync(dest), big);
    assert.deepEqual(ranges, ['none', `bytes=${partial}-`]);
    assert.equal(existsSync(`${dest}.part`), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('download: HTTP errors name the address; downloadDataset tries mirrors in order and extracts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-dl-'));
  try {
    await assert.rejects(download(`${base}/missing`, join(dir, 'x'), { checksum: 'ab' }), (e: unknown) => e instanceof ByolError && e.code === 'DOWNLOAD_FAILED' && e.option === `${base}/missing` && /HTTP 404/.test((e as Error).message));
    const out = await downloadDataset('cifar10', dir, { files: [{ name: 'cifar-10-binary.tar.gz', urls: [`${base}/missing`, `${base}/good.tar.gz`], md5: md5(payload) }] });
    assert.equal(out, join(dir, 'cifar10'));
    assert.deepEqual(readdirSync(out).sort(), ['.byol-output.json', 'cifar-10-binary.tar.gz', 'data_batch_1.bin', 'readme.html']);
    assert.deepEqual(readFileSync(join(out, 'data_batch_1.bin')), Buffer.alloc(3073, 7));
    // An archive entry that climbs out of the folder is refused.
    const evil = join(dir, 'evil.tar.gz');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(evil, gzipSync(tar({ '../escape.txt': Buffer.from('x') })));
    await assert.rejects(extractTarGz(evil, join(dir, 'x')), (e: unknown) => e instanceof ByolError && /unsafe entry name/.test((e as Error).message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('downloadDataset writes only into a folder of its own: a cache folder of other files is refused, and extraction never replaces a user\'s file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-dl-'));
  const { mkdirSync, writeFileSync } = await import('node:fs');
  try {
    const files = [{ name: 'cifar-10-binary.tar.gz', urls: [`${base}/good.tar.gz`], md5: md5(payload) }];
    mkdirSync(join(dir, 'cifar10'));
    writeFileSync(join(dir, 'cifar10', 'readme.html'), 'my own readme');
    await assert.rejects(downloadDataset('cifar10', dir, { files }), (e: unknown) => e instanceof ByolError && e.code === 'OUTPUT_EXISTS' && /cifar10: not empty .* not made by byol/.test((e as Error).message));
    assert.deepEqual(readdirSync(join(dir, 'cifar10')), ['readme.html']);
    // Told to write beside it, it still refuses to replace the user's file of the same name as an archive entry.
    await assert.rejects(downloadDataset('cifar10', dir, { files, overwrite: true }), (e: unknown) => e instanceof ByolError && e.code === 'OUTPUT_EXISTS' && /readme\.html: exists and byol did not write it/.test((e as Error).message));
    assert.equal(readFileSync(join(dir, 'cifar10', 'readme.html'), 'utf8'), 'my own readme');
    // Its own folder, again: nothing fetched twice, nothing of its own replaced by a same-size file.
    const again = join(dir, 'again');
    await downloadDataset('cifar10', again, { files });
    await downloadDataset('cifar10', again, { files: [{ ...files[0]!, urls: [`${base}/missing`] }] });
    assert.deepEqual(readFileSync(join(again, 'cifar10', 'data_batch_1.bin')), Buffer.alloc(3073, 7));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('extractTarGz streams: a 300 MB entry unpacks in little memory (STL-10\'s archive holds 2.6 GB, over readFile\'s limit)', async () => {
  const { spawnSync } = await import('node:child_process');
  const { createWriteStream, statSync: stat } = await import('node:fs');
  const { createGzip } = await import('node:zlib');
  const { pipeline } = await import('node:stream/promises');
  const dir = mkdtempSync(join(tmpdir(), 'byol-dl-'));
  try {
    const size = 300 * 1024 * 1024;
    const archive = join(dir, 'big.tar.gz');
    // The archive is written as a stream too: a header, 300 MB of a repeating pattern, the end blocks.
    async function* tarStream() {
      const header = tar({ 'folder/big.bin': Buffer.alloc(0) }).subarray(0, 512);
      header.write(size.toString(8).padStart(11, '0') + '\0', 124);
      header.write('        ', 148);
      let sum = 0;
      for (const b of header) sum += b;
      header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
      yield header;
      const block = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => i % 251));
      for (let i = 0; i < size / block.length; i++) yield block;
      yield Buffer.alloc(1024);
    }
    await pipeline(tarStream, createGzip({ level: 1 }), createWriteStream(archive));
    const script = `import('${new URL('../src/data/download.js', import.meta.url).href}').then(async (m) => { await m.extractTarGz(${JSON.stringify(archive)}, ${JSON.stringify(join(dir, 'out'))}); console.log(process.resourceUsage().maxRSS); })`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const peakMiB = Number(r.stdout.trim()) / 1024;
    assert.equal(stat(join(dir, 'out', 'big.bin')).size, size);
    assert.ok(peakMiB < 200, `peak resident memory ${peakMiB.toFixed(0)} MiB while unpacking 300 MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
