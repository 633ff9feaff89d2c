/**
 * The page in a real browser: Debian's Chromium (never a downloaded one) driven by playwright-core, headless, software
 * WebGL (SwiftShader), the page served from 127.0.0.1. Run by `npm run test:web` (after building web/dist).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { deltaDifference, referenceStep, type ReferenceResult } from '../src/reference.js';
import { serveStatic } from '../serve.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const site = join(root, 'web', 'dist');
const CHROMIUM = process.env['BYOL_CHROMIUM'] ?? '/usr/bin/chromium';
/** The flags this closed network needs, and software WebGL / WebGPU (SwiftShader) on a machine without a GPU. */
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--enable-unsafe-swiftshader',
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan',
];
const out = join(root, 'dist', 'web-test');
let browser: Browser;
let server: Awaited<ReturnType<typeof serveStatic>>;

interface Metrics {
  step: number;
  loss: number;
  tau: number;
  collapse: number;
  imagesPerSecond: number;
}
interface PageStateView {
  backend: string;
  dataset: { name: string; n: number } | null;
  step: number;
  training: boolean;
  restored: boolean;
  savedAt: number;
  metrics: Metrics[];
  map: { knn: number | null; randomKnn: number | null; explained: number[]; n: number } | null;
  neighbours: number[];
  errors: string[];
  memory: number | null;
}
declare const byolPage: {
  ready: Promise<void>;
  state(): PageStateView;
  pointPosition(i: number): [number, number] | null;
  embeddings(): Promise<number[] | null>;
  initialEmbeddings(): Promise<number[] | null>;
  referenceStep(): Promise<ReferenceResult>;
};

before(async () => {
  assert.ok(existsSync(join(site, 'app.js')), 'web/dist is built (npm run test:web builds it)');
  mkdirSync(out, { recursive: true });
  server = await serveStatic(site);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
});
after(async () => {
  await browser?.close();
  await server?.close();
});

/** A page of the site with its console errors collected; waits for the page to be ready. */
async function open(context: BrowserContext, query: string): Promise<{ page: Page; consoleErrors: string[] }> {
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  await page.goto(`${server.url}?${query}`);
  await page.evaluate(() => byolPage.ready);
  return { page, consoleErrors };
}

const state = (page: Page) => page.evaluate(() => byolPage.state());
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

async function trainOnSample(page: Page, steps: number, batch: number, lr?: number): Promise<void> {
  await page.click('#use-sample');
  await page.waitForFunction(() => byolPage.state().dataset !== null);
  await page.fill('#steps', String(steps));
  await page.fill('#batch', String(batch));
  if (lr !== undefined) await page.fill('#lr', String(lr));
  await page.click('#train');
}

const waitDone = (page: Page, steps: number, timeout = 300_000) =>
  page.waitForFunction((n) => byolPage.state().step >= n && !byolPage.state().training, steps, { timeout, polling: 200 });

test('one BYOL step in the page on webgl, webgpu and wasm matches the cpu backend in Node (same weights and inputs)', async (t) => {
  await tf.setBackend('cpu');
  const reference = await referenceStep();
  assert.ok(reference.loss > 0 && reference.deltas.length > 10_000);
  for (const backend of ['webgl', 'webgpu', 'wasm']) {
    const context = await browser.newContext();
    try {
      const { page, consoleErrors } = await open(context, `backend=${backend}`);
      const s = await state(page);
      if (backend === 'webgpu' && s.backend !== 'webgpu') {
        t.diagnostic(`webgpu: not available in this Chromium (${s.errors.join('; ')}); not compared`);
        continue;
      }
      assert.equal(s.backend, backend, s.errors.join('; '));
      const got = await page.evaluate(() => byolPage.referenceStep());
      assert.equal(got.backend, backend);
      const lossDiff = Math.abs(got.loss - reference.loss) / reference.loss;
      const deltaDiff = deltaDifference(got, reference);
      t.diagnostic(`${backend}: loss ${got.loss} vs cpu ${reference.loss} (relative ${lossDiff.toExponential(1)}); weight changes differ by ${deltaDiff.toExponential(1)} of the largest; second loss ${got.secondLoss} vs ${reference.secondLoss}`);
      assert.ok(lossDiff < 1e-3, `${backend}: loss`);
      assert.ok(Math.abs(got.secondLoss - reference.secondLoss) / reference.secondLoss < 1e-3, `${backend}: loss after the update`);
      assert.ok(Math.abs(got.collapse - reference.collapse) < 1e-3 * reference.collapse, `${backend}: collapse`);
      assert.ok(deltaDiff < 1e-3, `${backend}: weight changes`);
      assert.deepEqual(consoleErrors, []);
    } finally {
      await context.close();
    }
  }
});

test('wasm: the sample trains (the loss falls, no leak), the map and the neighbours render, the encoder downloads into a folder byol embed reads', async (t) => {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 1000 } });
  try {
    const { page, consoleErrors } = await open(context, 'backend=wasm');
    assert.equal((await state(page)).dataset, null);
    await trainOnSample(page, 40, 32);
    await waitDone(page, 40);
    const s = await state(page);
    assert.equal(s.backend, 'wasm');
    assert.deepEqual(s.metrics.map((m) => m.step), Array.from({ length: 40 }, (_, i) => i + 1));
    const [first, last] = [mean(s.metrics.slice(0, 10).map((m) => m.loss)), mean(s.metrics.slice(-10).map((m) => m.loss))];
    t.diagnostic(`wasm: loss ${first.toFixed(3)} (steps 1–10) → ${last.toFixed(3)} (31–40); ${mean(s.metrics.slice(5).map((m) => m.imagesPerSecond)).toFixed(0)} images/s`);
    assert.ok(last < first - 0.1, `the loss falls: ${first} → ${last}`);
    assert.equal(s.savedAt, 40, 'saved at the end');
    // Mapping embeds every image twice (BYOL and the step-0 encoder) and runs kNN: it leaves no tensor behind.
    await page.click('#map');
    await page.waitForFunction(() => byolPage.state().map !== null, null, { timeout: 120_000 });
    const m = (await state(page)).map!;
    assert.equal(m.n, 2000);
    assert.ok(m.knn !== null && m.knn > 0.5 && m.randomKnn !== null && m.randomKnn > 0.5, `kNN ${m.knn} vs ${m.randomKnn}`);
    t.diagnostic(`kNN top-1 after 40 steps ${m.knn} vs the step-0 encoder ${m.randomKnn}; PCA explains ${m.explained.map((e) => e.toFixed(3))}`);
    const inked = await page.evaluate(() => {
      const c = document.getElementById('map-canvas') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let k = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i]! > 0) k++;
      return k;
    });
    assert.ok(inked > 2000, `the map has points (${inked} pixels)`);
    assert.equal((await state(page)).memory, s.memory, 'no tensor left by mapping');
    // Click a point: it and its 8 nearest neighbours are shown.
    const [x, y] = (await page.evaluate(() => byolPage.pointPosition(123)))!;
    await page.click('#map-canvas', { position: { x, y } });
    const shown = await state(page);
    assert.equal(shown.neighbours.length, 9);
    assert.equal(await page.locator('#neighbours canvas').count(), 9);
    await page.screenshot({ path: join(out, 'page-wasm.png'), fullPage: true });
    // Download: model.json, its weights and byol.json — a folder `byol embed` takes, giving the page's features.
    const folder = mkdtempSync(join(tmpdir(), 'byol-web-model-'));
    try {
      const names: string[] = [];
      page.on('download', (d) => {
        names.push(d.suggestedFilename());
        void d.saveAs(join(folder, d.suggestedFilename()));
      });
      await page.click('#download');
      await page.waitForFunction(() => true);
      for (let i = 0; i < 100 && !(existsSync(join(folder, 'byol.json')) && existsSync(join(folder, 'model.json')) && existsSync(join(folder, 'model.weights.bin'))); i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(names.sort(), ['byol.json', 'model.json', 'model.weights.bin']);
      const info = JSON.parse(readFileSync(join(folder, 'byol.json'), 'utf8')) as { step: number; input: { size: number; mean: number[] } };
      assert.equal(info.step, 40);
      assert.equal(info.input.size, 28);
      const npy = join(folder, 'emb.npy');
      const cli = spawnSync(process.execPath, [join(root, 'dist', 'src', 'cli', 'main.js'), 'embed', folder, 'mnist', '--limit', '16', '--out', npy, '--backend', 'cpu'], { encoding: 'utf8' });
      assert.equal(cli.status, 0, cli.stderr);
      const raw = readFileSync(npy);
      const headerLength = raw.readUInt16LE(8);
      const theirs = new Float32Array(raw.buffer.slice(raw.byteOffset + 10 + headerLength, raw.byteOffset + raw.length));
      const ours = (await page.evaluate(() => byolPage.embeddings()))!.slice(0, theirs.length);
      const scale = Math.max(...ours.map(Math.abs));
      const diff = ours.reduce((d, v, i) => Math.max(d, Math.abs(v - theirs[i]!)), 0) / scale;
      t.diagnostic(`byol embed of the downloaded folder vs the page's features: ${diff.toExponential(1)} of the largest`);
      assert.ok(diff < 1e-4);
      // And back: the downloaded files start the next run, whose step-0 encoder is the one downloaded.
      await page.setInputFiles('#load-encoder', [join(folder, 'model.json'), join(folder, 'model.weights.bin')]);
      await page.waitForFunction(() => byolPage.state().step === 0);
      assert.match(await page.textContent('#status') ?? '', /The next one starts from model\.json/);
      await page.fill('#steps', '2');
      await page.click('#train');
      await waitDone(page, 2);
      assert.equal((await state(page)).map, null, 'the first run\'s map is gone with it');
      const initial = (await page.evaluate(() => byolPage.initialEmbeddings()))!;
      assert.deepEqual(initial.slice(0, theirs.length), Array.from(ours), 'the next run starts from the downloaded encoder');
      await page.click('#map');
      await page.waitForFunction(() => byolPage.state().map !== null, null, { timeout: 120_000 });
      assert.equal((await state(page)).map!.randomKnn, m.knn, 'its kNN baseline is the first run\'s encoder');
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual((await state(page)).errors, []);
  } finally {
    await context.close();
  }
});

test('a reload resumes the run exactly from IndexedDB (wasm: the same losses as an uninterrupted run)', async () => {
  const run = async (pauseAt: number | null): Promise<{ losses: number[]; pausedAt: number | null; restored: boolean; errors: string[]; memory: number | null; memoryAtPause: number | null }> => {
    const context = await browser.newContext();
    try {
      let { page, consoleErrors } = await open(context, 'backend=wasm&saveEvery=7');
      await trainOnSample(page, 30, 32);
      let pausedAt: number | null = null;
      let memoryAtPause: number | null = null;
      let restored = false;
      if (pauseAt !== null) {
        await page.waitForFunction((n) => byolPage.state().step >= n, pauseAt, { polling: 50 });
        await page.click('#pause');
        await page.waitForFunction(() => !byolPage.state().training);
        const s = await state(page);
        pausedAt = s.step;
        memoryAtPause = s.memory;
        assert.equal(s.savedAt, pausedAt, 'a pause saves');
        const errors = consoleErrors;
        await page.reload();
        ({ page, consoleErrors } = await open(context, 'backend=wasm&saveEvery=7'));
        consoleErrors.push(...errors);
        const r = await state(page);
        restored = r.restored;
        assert.equal(r.step, pausedAt);
        assert.equal(r.metrics.length, pausedAt, 'the curves come back too');
        assert.equal(await page.textContent('#train'), 'Resume');
        await page.click('#train');
      }
      await waitDone(page, 30);
      const s = await state(page);
      return { losses: s.metrics.map((m) => m.loss), pausedAt, restored, errors: [...consoleErrors, ...s.errors], memory: s.memory, memoryAtPause };
    } finally {
      await context.close();
    }
  };
  const straight = await run(null);
  const resumed = await run(12);
  assert.equal(resumed.memoryAtPause, straight.memory, 'as many tensors after 12 steps as after 30: nothing leaks per step');
  assert.ok(resumed.restored && resumed.pausedAt !== null && resumed.pausedAt < 30);
  assert.equal(resumed.losses.length, 30);
  assert.deepEqual(resumed.losses, straight.losses, 'identical losses, before and after the reload');
  assert.deepEqual([...straight.errors, ...resumed.errors], []);
});

test('webgl (software, SwiftShader): the sample trains and the loss falls', async (t) => {
  const context = await browser.newContext();
  try {
    const { page, consoleErrors } = await open(context, 'backend=webgl');
    // Software WebGL runs ~6 images/s: a short run of small batches, at the base rate of the README's CLI runs (1.0;
    // the paper's 0.2 × 16/256 barely moves 30 steps).
    await trainOnSample(page, 30, 16, 1.0);
    await waitDone(page, 30, 400_000);
    const s = await state(page);
    assert.equal(s.backend, 'webgl');
    const [first, last] = [mean(s.metrics.slice(0, 10).map((m) => m.loss)), mean(s.metrics.slice(-10).map((m) => m.loss))];
    t.diagnostic(`webgl: loss ${first.toFixed(3)} (steps 1–10) → ${last.toFixed(3)} (21–30); ${mean(s.metrics.slice(5).map((m) => m.imagesPerSecond)).toFixed(1)} images/s in software WebGL (not a speed figure)`);
    assert.ok(last < first - 0.1, `the loss falls: ${first} → ${last}`);
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(s.errors, []);
  } finally {
    await context.close();
  }
});

test('errors show in the page: an unknown backend, files that are not images or do not decode; a folder tree gives labels', async () => {
  const context = await browser.newContext();
  try {
    const bad = await open(context, 'backend=glide');
    assert.match(await bad.page.textContent('#errors') ?? '', /\?backend= must be one of webgpu, webgl, wasm, cpu; got "glide"/);
    assert.equal(await bad.page.isVisible('#errors'), true);
    assert.match(await bad.page.textContent('#backend') ?? '', /^backend: (webgpu|webgl|wasm)/, 'the best backend that works is used instead');
    await bad.page.close();
    const { page } = await open(context, 'backend=wasm');
    const sharp = (await import('sharp')).default;
    const png = (r: number) => sharp({ create: { width: 40, height: 30, channels: 3, background: { r, g: 90, b: 200 } } }).png().toBuffer();
    await page.setInputFiles('#pick-files', [
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') },
      { name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('not a png at all') },
      { name: 'red.png', mimeType: 'image/png', buffer: await png(250) },
      { name: 'dark.png', mimeType: 'image/png', buffer: await png(10) },
    ]);
    await page.waitForFunction(() => byolPage.state().dataset !== null);
    const s = await state(page);
    assert.equal(s.dataset!.n, 2);
    assert.match(await page.textContent('#errors') ?? '', /left out 2 file\(s\): notes\.txt: not an image \(text\/plain\); broken\.png: cannot be decoded/);
    assert.match(await page.textContent('#data-info') ?? '', /2 dropped images: 32×32, colour, no labels/);
    // A folder of two sub-folders: labelled by folder.
    const dir = mkdtempSync(join(tmpdir(), 'byol-web-folder-'));
    try {
      for (const [k, cls] of ['cats', 'dogs'].entries()) {
        mkdirSync(join(dir, 'pets', cls), { recursive: true });
        for (let i = 0; i < 3; i++) await sharp(await png(40 * k + i)).toFile(join(dir, 'pets', cls, `${i}.png`));
      }
      await page.setInputFiles('#pick-folder', join(dir, 'pets'));
      await page.waitForFunction(() => byolPage.state().dataset?.n === 6);
      assert.match(await page.textContent('#data-info') ?? '', /6 dropped images, 2 folders as labels: 32×32, colour, 2 classes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await context.close();
  }
});

test('a browser without WebGL: asking for webgl says so in the page and trains on the best backend that works', async () => {
  const bare = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_FLAGS.filter((f) => !/swiftshader|webgpu|Vulkan/.test(f)), '--disable-gpu', '--disable-software-rasterizer'] });
  try {
    const context = await bare.newContext();
    const { page } = await open(context, 'backend=webgl');
    const s = await state(page);
    assert.match(s.errors.join('\n'), /no tfjs backend works in this browser: webgl \(no WebGL context \(disabled, or no GPU and no software rasterizer\)\)/);
    assert.notEqual(s.backend, 'webgl');
    assert.match(await page.textContent('#backend') ?? '', /^backend: (webgpu|wasm)/);
    await trainOnSample(page, 2, 16);
    await waitDone(page, 2);
  } finally {
    await bare.close();
  }
});
