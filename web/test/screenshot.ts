/**
 * The README's picture of the page: trains on the built-in sample in Chromium (wasm: SwiftShader's software WebGL is
 * too slow here to be worth the wait), maps the embeddings, shows one image's neighbours, and saves a screenshot.
 *
 *   npm run build:web && node dist/web/test/screenshot.js docs/web-mnist.png [STEPS] [BATCH] [BACKEND]
 */
import { chromium } from 'playwright-core';
import { serveStatic } from '../serve.js';
import { fileURLToPath } from 'node:url';

declare const byolPage: { ready: Promise<void>; state(): { step: number; training: boolean; map: unknown; errors: string[] }; pointPosition(i: number): [number, number] | null };

const [file, steps = '400', batch = '64', backend = 'wasm'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node dist/web/test/screenshot.js OUT.png [STEPS] [BATCH] [BACKEND]');
  process.exit(2);
}
const server = await serveStatic(fileURLToPath(new URL('../../../web/dist', import.meta.url)));
const browser = await chromium.launch({
  executablePath: process.env['BYOL_CHROMIUM'] ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--enable-unsafe-swiftshader'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(`${server.url}?backend=${backend}`);
  await page.evaluate(() => byolPage.ready);
  await page.click('#use-sample');
  await page.waitForFunction(() => byolPage.state().step === 0);
  await page.fill('#steps', steps);
  await page.fill('#batch', batch);
  const started = Date.now();
  await page.click('#train');
  await page.waitForFunction((n) => byolPage.state().step >= n && !byolPage.state().training, Number(steps), { timeout: 0, polling: 1000 });
  console.log(`trained ${steps} steps of ${batch} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  await page.click('#map');
  await page.waitForFunction(() => byolPage.state().map !== null, null, { timeout: 0 });
  const [x, y] = (await page.evaluate(() => byolPage.pointPosition(7)))!;
  await page.click('#map-canvas', { position: { x, y } });
  await page.screenshot({ path: file, fullPage: true });
  console.log(`${file}: ${await page.textContent('#status')}\n${await page.textContent('#knn')}`);
  const errors = await page.evaluate(() => byolPage.state().errors);
  if (errors.length) console.error(`page errors: ${errors.join('; ')}`);
} finally {
  await browser.close();
  await server.close();
}
