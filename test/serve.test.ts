/** `byol serve`: the index (exact search, durable store), the HTTP service (inject and a real socket), the CLI. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../src/node.js';
import { encodeNpy } from '../src/io/npy.js';
import { buildServer, MicroBatcher, ServeError } from '../src/serve/server.js';
import { decodeNpy, IndexStore, JOURNAL, loadEmbeddings } from '../src/serve/store.js';
import { checkId, VectorIndex } from '../src/serve/vector-index.js';
import { byol, dataset, main, mlpEncoder, skipNoData } from './cli-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'byol-serve-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Deterministic pseudo-random numbers. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
const randomVectors = (n: number, dim: number, seed: number) => {
  const r = rng(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: dim }, r));
};
const cosine = (a: Float32Array, b: Float32Array) => {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) [ab, aa, bb] = [ab + a[i]! * b[i]!, aa + a[i]! ** 2, bb + b[i]! ** 2];
  return ab / Math.sqrt(aa * bb);
};

test('exact search: the top k equal brute force, best first; replace, remove, exclude', () => {
  const vs = randomVectors(500, 16, 1);
  const index = new VectorIndex(16, 4); // grows
  vs.forEach((v, i) => index.add({ id: `item-${i}`, label: i % 3 }, v));
  assert.equal(index.size, 500);
  for (const q of randomVectors(5, 16, 2)) {
    const want = vs.map((v, i) => [i, cosine(v, q)] as const).sort((a, b) => b[1] - a[1]).slice(0, 7);
    const got = index.search(q, 7);
    assert.deepEqual(got.map((h) => h.id), want.map(([i]) => `item-${i}`));
    got.forEach((h, j) => assert.ok(Math.abs(h.score - want[j]![1]) < 1e-5));
    assert.equal(got[0]!.label, Number(got[0]!.id.slice(5)) % 3);
  }
  // An item's own vector finds itself first, unless excluded.
  assert.equal(index.search(vs[42]!, 1)[0]!.id, 'item-42');
  assert.ok(index.search(vs[42]!, 3, 'item-42').every((h) => h.id !== 'item-42'));
  // Replace moves it; remove takes it out and the swapped-in last row stays findable.
  index.add({ id: 'item-42', label: 'moved' }, vs[7]!);
  assert.deepEqual(index.search(vs[7]!, 2).map((h) => h.id).sort(), ['item-42', 'item-7']);
  assert.ok(index.remove('item-3'));
  assert.ok(!index.remove('item-3'));
  assert.equal(index.size, 499);
  assert.equal(index.search(vs[499]!, 1)[0]!.id, 'item-499');
  assert.equal(index.search(vs[0]!, 1000).length, 499);
  for (const bad of ['', 'a\nb', 'x'.repeat(257), 7]) assert.throws(() => checkId(bad), /id must be a string of 1–256 characters/);
  assert.throws(() => index.add({ id: 'z', label: null }, new Float32Array(16)), /zero or not finite/);
  assert.throws(() => index.add({ id: 'z', label: null }, new Float32Array(3).fill(1)), /3 values, the index holds 16/);
});

test('embeddings files: .npy round trip and its .jsonl of ids', async () => {
  const vs = randomVectors(10, 4, 3);
  const flat = new Float32Array(40);
  vs.forEach((v, i) => flat.set(v, i * 4));
  const { data, rows, dim } = decodeNpy(encodeNpy(flat, [10, 4]), 'x.npy');
  assert.deepEqual([rows, dim], [10, 4]);
  assert.deepEqual(Array.from(data), Array.from(flat));
  writeFileSync(join(root, 'e.npy'), encodeNpy(flat, [10, 4]));
  writeFileSync(join(root, 'e.jsonl'), vs.map((_, i) => `${JSON.stringify({ index: i, id: `img/${i}.png`, label: i < 5 ? 'a' : 'b' })}\n`).join(''));
  const index = await loadEmbeddings(join(root, 'e.npy'));
  assert.equal(index.size, 10);
  assert.equal(index.search(vs[6]!, 1)[0]!.id, 'img/6.png');
  assert.equal(index.search(vs[6]!, 1)[0]!.label, 'b');
  writeFileSync(join(root, 'short.npy'), encodeNpy(flat, [10, 4]));
  writeFileSync(join(root, 'short.jsonl'), '{"id":"a"}\n');
  await assert.rejects(loadEmbeddings(join(root, 'short.npy')), /1 lines for 10 embeddings/);
  assert.throws(() => decodeNpy(new Uint8Array([1, 2, 3]), 'bad.npy'), /bad\.npy: not a \.npy file/);
});

test('the index folder: acknowledged changes survive a crash; a torn last line is dropped; one writer at a time', async () => {
  const dir = join(root, 'idx');
  const vs = randomVectors(20, 8, 4);
  const seed = new VectorIndex(8);
  vs.slice(0, 10).forEach((v, i) => seed.add({ id: `s${i}`, label: null }, v));
  const store = await IndexStore.open(dir, { seed, compactEvery: 1000 });
  await assert.rejects(IndexStore.open(dir, { dim: 8 }), (e: unknown) => (e as { code?: string }).code === 'RUN_IN_USE' && /is being served by process \d+/.test((e as Error).message));
  await store.add(vs.slice(10).map((v, i) => ({ item: { id: `n${i}`, label: i }, vector: v })));
  assert.ok(await store.remove('s0'));
  assert.ok(!(await store.remove('nope')));
  // A crash now: the journal holds the changes (no compaction, no close); the lock's process is this one, so a
  // reader in another process would see it held — here we copy the folder as a crash would leave it.
  const crashed = join(root, 'idx-crashed');
  rmSync(crashed, { recursive: true, force: true });
  const { cpSync } = await import('node:fs');
  cpSync(dir, crashed, { recursive: true });
  rmSync(join(crashed, 'run.lock'));
  // …and a change being appended when the power went: half a line.
  appendFileSync(join(crashed, JOURNAL), '{"seq":99,"op":"add","id":"half","lab');
  const logs: string[] = [];
  const again = await IndexStore.open(crashed, { log: (l) => logs.push(l) });
  assert.equal(again.index.size, 19);
  assert.ok(!again.index.has('s0') && again.index.has('n9') && !again.index.has('half'));
  assert.match(logs.join('\n'), /dropped its last line, cut short by a crash/);
  for (const [i, v] of vs.entries()) if (i > 0) assert.ok(Math.abs(cosine(again.index.vector(i < 10 ? `s${i}` : `n${i - 10}`)!, v) - 1) < 1e-6);
  await again.close();
  // After a clean close the journal is folded into the snapshot.
  assert.equal(readFileSync(join(crashed, JOURNAL), 'utf8'), '');
  const reopened = await IndexStore.open(crashed);
  assert.equal(reopened.index.size, 19);
  await reopened.close();
  await store.close();
  // A damaged line that is not the last is an error naming the file and line.
  writeFileSync(join(crashed, JOURNAL), 'garbage\n{"seq":100,"op":"remove","id":"n1"}\n');
  await assert.rejects(IndexStore.open(crashed), /journal\.jsonl: line 1 is damaged/);
});

test('micro-batching: concurrent images share forward passes; a full queue refuses with 503', async () => {
  const passes: number[] = [];
  // Five more images announced (requests still decoding): the first waits for them, up to the 20 ms window.
  const b = new MicroBatcher(async (px) => (passes.push(px.length), px.map((p) => Float32Array.of(p[0]!))), 8, 20, 10, () => 5);
  const out = await Promise.all(Array.from({ length: 6 }, (_, i) => b.embed([Uint8Array.of(i)])));
  assert.deepEqual(out.map((o) => o[0]![0]), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(passes, [6]);
  // Nothing else announced: a lone image goes at once, without waiting for the window.
  const lone = new MicroBatcher(async (px) => px.map(() => Float32Array.of(1)), 8, 10_000, 10);
  const t0 = Date.now();
  await lone.embed([Uint8Array.of(0)]);
  assert.ok(Date.now() - t0 < 5_000);
  // A slow encoder: while it runs, the queue fills; past `maxQueue` waiting images, requests are refused.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = new MicroBatcher(async (px) => (await gate, px.map(() => Float32Array.of(0))), 2, 0, 3);
  const first = slow.embed([Uint8Array.of(0), Uint8Array.of(1)]);
  const queued = slow.embed([Uint8Array.of(2), Uint8Array.of(3), Uint8Array.of(4)]);
  assert.equal(slow.waiting, 3);
  await assert.rejects(slow.embed([Uint8Array.of(5)]), (e: unknown) => e instanceof ServeError && e.status === 503 && e.code === 'QUEUE_FULL');
  release();
  assert.equal((await first).length + (await queued).length, 5);
  assert.equal(slow.passes, 3);
  // Work that takes too long is answered with 503 TIMEOUT.
  const { withTimeout } = await import('../src/serve/server.js');
  await assert.rejects(withTimeout(new Promise(() => undefined), 20), (e: unknown) => e instanceof ServeError && e.status === 503 && e.code === 'TIMEOUT');
  assert.equal(await withTimeout(Promise.resolve(7), 1000), 7);
});

/** A tiny deterministic encoder on 28×28 grey images, and PNGs to feed it. */
async function fixture() {
  await useBackend('cpu');
  const model = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [28, 28, 1] }), tfl.layers.dense({ units: 8, kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) })] });
  const embed = (x: tf.Tensor4D) => model.predict(x) as tf.Tensor2D;
  const png = (seed: number, size = 28) => {
    const r = rng(seed);
    return sharp(Buffer.from(Array.from({ length: size * size }, () => Math.round((r() + 1) * 127))), { raw: { width: size, height: size, channels: 1 } }).png().toBuffer();
  };
  const images = await Promise.all(Array.from({ length: 6 }, (_, i) => png(10 + i)));
  const direct = async (bytes: Buffer) => {
    const { data } = await sharp(bytes).removeAlpha().toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    const f = tf.tidy(() => embed(tf.div(tf.tensor4d(Uint8Array.from(data), [1, 28, 28, 1], 'int32'), 255) as tf.Tensor4D));
    const v = (await f.data()) as Float32Array;
    f.dispose();
    return v;
  };
  const index = new VectorIndex(8);
  for (const [i, im] of images.entries()) index.add({ id: `img-${i}`, label: i % 2 }, await direct(im));
  return { model, embed, images, direct, index, png, input: { size: 28, channels: 1, mean: [0], std: [1] } };
}

test('the service (inject): health, embed, search, items; every bad request a 4xx JSON error, the server up after', async () => {
  const f = await fixture();
  const store = await IndexStore.open(join(root, 'svc-index'), { seed: f.index });
  const app = await buildServer({ embed: f.embed, input: f.input, index: store.index, store, token: 'tok', maxPixels: 2000, maxBodyBytes: 64 * 1024 });
  const auth = { authorization: 'Bearer tok' };
  const post = (url: string, payload: Buffer | string | object, type = 'image/png', headers: Record<string, string> = auth) =>
    app.inject({ method: 'POST', url, payload: payload as string, headers: { 'content-type': type, ...headers } });
  try {
    const health = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(health.statusCode, 200);
    assert.equal(health.json().items, 6);
    const e = await post('/embed', f.images[2]!);
    assert.equal(e.statusCode, 200);
    const want = await f.direct(f.images[2]!);
    (e.json().embedding as number[]).forEach((x, i) => assert.ok(Math.abs(x - want[i]!) < 1e-5));
    const batch = await post('/embed', { images: f.images.slice(0, 3).map((b) => b.toString('base64')) }, 'application/json');
    assert.equal(batch.json().embeddings.length, 3);
    const s = await post('/search?k=3', f.images[4]!);
    assert.equal(s.statusCode, 200);
    assert.equal(s.json().results[0].id, 'img-4');
    assert.ok(Math.abs(s.json().results[0].score - 1) < 1e-5);
    assert.equal(s.json().results.length, 3);
    const byId = await post('/search?k=2', { id: 'img-4' }, 'application/json');
    assert.ok(byId.json().results.every((h: { id: string }) => h.id !== 'img-4'));
    // Changes, durably.
    const add = await post('/items', { items: [{ id: 'new one', label: 'x', image: (await f.png(99)).toString('base64') }] }, 'application/json');
    assert.equal(add.statusCode, 200);
    assert.equal(add.json().items, 7);
    assert.equal((await post('/search?k=1', await f.png(99))).json().results[0].id, 'new one');
    assert.equal((await app.inject({ method: 'DELETE', url: '/items/new%20one', headers: auth })).statusCode, 200);
    // Bad requests: status, code, and the server still answers.
    const cases: [Promise<{ statusCode: number; json(): { code: string; error: string } }>, number, string][] = [
      [post('/embed', Buffer.from('not an image at all')), 400, 'INVALID_IMAGE'],
      [post('/embed', Buffer.alloc(0)), 400, 'INVALID_IMAGE'],
      [post('/embed', await f.png(5, 100)), 413, 'IMAGE_TOO_LARGE'],
      [post('/embed', Buffer.alloc(100 * 1024, 1)), 413, 'BODY_TOO_LARGE'],
      [post('/embed', 'hello', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [post('/embed', '{"image": 5}', 'application/json'), 400, 'INVALID_BODY'],
      [post('/embed', '{not json', 'application/json'), 400, 'INVALID_BODY'],
      [post('/embed', { images: [] }, 'application/json'), 400, 'INVALID_BODY'],
      [post('/search?k=0', f.images[0]!), 400, 'INVALID_K'],
      [post('/search?k=abc', f.images[0]!), 400, 'INVALID_K'],
      [post('/search', { id: 'nobody' }, 'application/json'), 404, 'UNKNOWN_ID'],
      [post('/search', { embedding: [1, 2] }, 'application/json'), 400, 'INVALID_BODY'],
      [post('/items', { items: [{ id: '', image: 'AAAA' }] }, 'application/json'), 400, 'INVALID_ID'],
      [post('/items', { items: [{ id: '../../etc/passwd', image: 'AAAA' }] }, 'application/json'), 400, 'INVALID_IMAGE'],
      [app.inject({ method: 'DELETE', url: '/items/nobody', headers: auth }), 404, 'UNKNOWN_ID'],
      [post('/embed', f.images[0]!, 'image/png', {}), 401, 'UNAUTHORIZED'],
      [post('/embed', f.images[0]!, 'image/png', { authorization: 'Bearer wrong' }), 401, 'UNAUTHORIZED'],
      [app.inject({ method: 'GET', url: '/nothing', headers: auth }), 404, 'NOT_FOUND'],
    ];
    for (const [i, [p, status, code]] of cases.entries()) {
      const r = await p;
      assert.equal(r.statusCode, status, `case ${i}: ${JSON.stringify(r.json())}`);
      assert.equal(r.json().code, code, `case ${i}`);
      assert.equal(typeof r.json().error, 'string');
    }
    // Ids never touch the file system: the odd id above was refused as an image, not as a path; nothing was written.
    assert.ok(!existsSync(join(root, 'svc-index', 'etc')));
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).json().items, 6);
    const api = (await app.inject({ method: 'GET', url: '/openapi.json', headers: auth })).json();
    assert.equal(api.openapi, '3.0.3');
    assert.ok(['/health', '/embed', '/search', '/items', '/items/{id}'].every((p) => p in api.paths));
  } finally {
    await app.close();
    await store.close();
    f.model.dispose();
  }
  // A read-only index (an embeddings file) refuses changes with 409.
  const g = await fixture();
  const ro = await buildServer({ embed: g.embed, input: g.input, index: g.index });
  const r = await ro.inject({ method: 'DELETE', url: '/items/img-1' });
  assert.deepEqual([r.statusCode, r.json().code], [409, 'READ_ONLY']);
  await ro.close();
  g.model.dispose();
});

test('the service on a real socket (127.0.0.1): concurrent requests are batched into fewer forward passes', async () => {
  const f = await fixture();
  const app = await buildServer({ embed: f.embed, input: f.input, index: f.index, batchWindowMs: 20 });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    assert.match(address, /^http:\/\/127\.0\.0\.1:\d+$/);
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => fetch(`${address}/search?k=1`, { method: 'POST', body: f.images[i % 6]!, headers: { 'content-type': 'image/png' } }).then((r) => r.json() as Promise<{ results: { id: string }[] }>)),
    );
    results.forEach((r, i) => assert.equal(r.results[0]!.id, `img-${i % 6}`));
    const health = (await (await fetch(`${address}/health`)).json()) as { passes: number; embedded: number };
    assert.equal(health.embedded, 24);
    assert.ok(health.passes < 24, `${health.passes} forward passes for 24 concurrent images`);
  } finally {
    await app.close();
    f.model.dispose();
  }
});

test('byol serve (CLI): a model folder and byol embed\'s file; /health and /search answer; SIGTERM closes it', { skip: skipNoData }, async () => {
  const model = await mlpEncoder(root);
  const emb = join(root, 'cli-emb.npy');
  const made = await byol(['embed', model, `${dataset}@test`, '--limit', '40', '--out', emb, '--backend', 'cpu']);
  assert.equal(made.code, 0, made.err);
  const served = startServe([model, '--index', emb, '--port', '0', '--backend', 'cpu']);
  const address = await served.address;
  assert.match(served.io.out, /serving .* on http:\/\/127\.0\.0\.1:\d+: 40 items of 64 values from .*cli-emb\.npy \(read-only\)/);
  try {
    const health = (await (await fetch(`${address}/health`)).json()) as { items: number; dim: number };
    assert.deepEqual([health.items, health.dim], [40, 64]);
    const bad = await fetch(`${address}/search`, { method: 'POST', body: 'garbage', headers: { 'content-type': 'image/jpeg' } });
    assert.equal(bad.status, 400);
    const png = await sharp(Buffer.alloc(28 * 28, 200), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
    const hits = (await (await fetch(`${address}/search?k=5`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } })).json()) as { results: { id: string; score: number }[] };
    assert.equal(hits.results.length, 5);
    assert.ok(hits.results[0]!.score >= hits.results[4]!.score);
  } finally {
    served.child.kill('SIGTERM');
  }
  assert.equal(await served.exited, 0, served.io.err);
  assert.match(served.io.out, /SIGTERM: closing/);
});

test('batched search (one matrix product for the queries that arrive together) gives the exact results', async () => {
  await useBackend('cpu');
  const { BatchedSearch, topK } = await import('../src/serve/server.js');
  assert.deepEqual(topK(Float32Array.of(0.1, 0.9, 0.5, 0.9, -1), 3), [1, 3, 2]);
  assert.deepEqual(topK(Float32Array.of(0.2), 5), [0]);
  const vs = randomVectors(300, 12, 7);
  const index = new VectorIndex(12);
  vs.forEach((v, i) => index.add({ id: `v${i}`, label: null }, v));
  const search = new BatchedSearch(index, 4);
  const queries = randomVectors(10, 12, 8);
  const before = tf.memory().numTensors;
  const got = await Promise.all(queries.map((q, i) => search.search(q, 5, i === 3 ? 'v0' : undefined)));
  queries.forEach((q, i) => {
    const want = index.search(q, 5, i === 3 ? 'v0' : undefined);
    assert.deepEqual(got[i]!.map((h) => h.id), want.map((h) => h.id));
    got[i]!.forEach((h, j) => assert.ok(Math.abs(h.score - want[j]!.score) < 1e-5));
  });
  assert.ok(search.passes < 10, `${search.passes} passes for 10 queries`);
  // A change to the index is seen by the next search (the cached matrix is rebuilt).
  index.add({ id: 'new', label: null }, queries[0]!);
  assert.equal((await search.search(queries[0]!, 1))[0]!.id, 'new');
  search.dispose();
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
});

/** Starts `byol serve ARGS` and resolves with its address (from its "serving … on URL" line), its output so far and its exit. */
function startServe(args: string[]) {
  const child = spawn(process.execPath, [main, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const io = { out: '', err: '' };
  child.stderr.on('data', (d: Buffer) => (io.err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const address = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no address in 60 s: ${io.out} ${io.err}`)), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      io.out += d.toString();
      const m = /serving .* on (http:\/\/127\.0\.0\.1:\d+)/.exec(io.out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then(() => reject(new Error(`exited: ${io.err}`)));
  });
  return { child, io, exited, address };
}

test('byol serve --index DIR --seed DATASET: embeds the dataset into a new index folder; changes persist across restarts', { skip: skipNoData }, async () => {
  const model = await mlpEncoder(root);
  const dir = join(root, 'cli-index');
  const first = startServe([model, '--index', dir, '--seed', `${dataset}@test`, '--limit', '20', '--port', '0', '--backend', 'cpu']);
  const a = await first.address;
  assert.match(first.io.out, /seeded with 20 embeddings of/);
  assert.deepEqual(await (await fetch(`${a}/health`)).json().then((h) => [(h as { items: number }).items, (h as { writable: boolean }).writable]), [20, true]);
  const png = await sharp(Buffer.alloc(28 * 28, 90), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  const added = await fetch(`${a}/items?id=grey-square&label=x`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
  assert.equal(added.status, 200);
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0, first.io.err);
  // Seeding a folder that holds an index is refused; served again without a seed, the change is there.
  const again = startServe([model, '--index', dir, '--seed', `${dataset}@test`, '--limit', '5', '--port', '0', '--backend', 'cpu']);
  again.address.catch(() => undefined);
  assert.equal(await again.exited, 2);
  assert.match(again.io.err, /already holds an index/);
  const third = startServe([model, '--index', dir, '--port', '0', '--backend', 'cpu']);
  const c = await third.address;
  const hits = (await (await fetch(`${c}/search?k=1`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } })).json()) as { results: { id: string; label: string }[] };
  assert.deepEqual([hits.results[0]!.id, hits.results[0]!.label], ['grey-square', 'x']);
  third.child.kill('SIGTERM');
  assert.equal(await third.exited, 0);
});
