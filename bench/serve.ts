/**
 * Benchmark: `byol serve` under load on loopback. The service runs in a child process (the ConvNet encoder, random
 * weights, native backend where built, on 28×28 grey images; an index of random 128-value embeddings), the load comes
 * from autocannon in this process — both on the same cores. For each index size (10 000 and 100 000 items), endpoint
 * (/embed, /search by image) and concurrency (1, 8, 32), with batching (the default: up to 32 images per forward
 * pass, 64 queries per search pass) and without (one image, one query per pass), it prints
 * requests/s and p50 / p99 latency; then a soak: N requests to /search with the service's resident memory before and
 * after.
 *
 *   npm run build && node dist/bench/serve.js [--seconds S] [--soak N] [--sizes 10000,100000]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import sharp from 'sharp';

const arg = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1]! : fallback);

if (process.argv.includes('--server')) {
  // The service: the ConvNet (random init), an index of random unit vectors.
  const { useFastestBackend } = await import('../src/node.js');
  const { convNet } = await import('../src/nets/convnet.js');
  const { buildServer } = await import('../src/serve/server.js');
  const { VectorIndex } = await import('../src/serve/vector-index.js');
  const backend = await useFastestBackend(() => undefined);
  const model = convNet({ seed: 1 });
  const items = Number(arg('items', '10000'));
  const index = new VectorIndex(128, items);
  let s = 1;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  for (let i = 0; i < items; i++) index.add({ id: `item-${i}`, label: i % 10 }, Float32Array.from({ length: 128 }, r));
  const app = await buildServer({ embed: (x) => model.predict(x) as never, input: { size: 28, channels: 1, mean: [0.2860], std: [0.3530] }, index, maxBatch: Number(arg('max-batch', '32')) });
  app.get('/memory', async () => process.memoryUsage());
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  console.log(JSON.stringify({ address, backend }));
} else {
  const seconds = Number(arg('seconds', '5'));
  const soak = Number(arg('soak', '5000'));
  const sizes = arg('sizes', '10000,100000').split(',').map(Number);
  const png = await sharp(Buffer.from(Array.from({ length: 28 * 28 }, (_, i) => (i * 37) % 256)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  const start = (items: number, maxBatch: number) =>
    new Promise<{ child: ChildProcess; address: string; backend: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--server', '--items', String(items), '--max-batch', String(maxBatch)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve({ child, ...(JSON.parse(line) as { address: string; backend: string }) });
      });
      child.on('exit', (code) => reject(new Error(`server exited ${code}`)));
    });
  const load = (url: string, connections: number, amount?: number) =>
    autocannon({ url, method: 'POST', body: png, headers: { 'content-type': 'image/png' }, connections, ...(amount ? { amount } : { duration: seconds }) });
  console.log(`byol serve on 127.0.0.1, ConvNet 28×28 encoder, ${seconds} s per row; autocannon in another process on the same cores`);
  console.log(`${'index'.padStart(7)} ${'endpoint'.padEnd(8)} ${'batching'.padEnd(9)} ${'conc.'.padStart(5)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'errors'.padStart(7)}`);
  for (const items of sizes) {
    for (const maxBatch of [32, 1]) {
      const { child, address, backend } = await start(items, maxBatch);
      try {
        if (items === sizes[0] && maxBatch === 32) console.log(`(service backend: ${backend})`);
        for (const endpoint of ['/embed', '/search?k=10']) {
          for (const c of [1, 8, 32]) {
            const r = await load(`${address}${endpoint}`, c);
            const errors = r.errors + r.non2xx + r.timeouts;
            console.log(`${String(items).padStart(7)} ${endpoint.split('?')[0]!.padEnd(8)} ${(maxBatch > 1 ? 'on' : 'off').padEnd(9)} ${String(c).padStart(5)} ${r.requests.average.toFixed(0).padStart(8)} ${String(r.latency.p50).padStart(7)} ${String(r.latency.p99).padStart(7)} ${String(errors).padStart(7)}`);
          }
        }
        if (items === sizes[sizes.length - 1] && maxBatch === 32 && soak > 0) {
          const mem = async () => ((await (await fetch(`${address}/memory`)).json()) as { rss: number }).rss / 2 ** 20;
          const before = await mem();
          const half = await load(`${address}/search?k=10`, 8, Math.floor(soak / 2));
          const middle = await mem();
          const rest = await load(`${address}/search?k=10`, 8, soak - Math.floor(soak / 2));
          const after = await mem();
          console.log(`soak: ${soak} /search requests at concurrency 8 on ${items} items, ${half.errors + rest.errors + half.non2xx + rest.non2xx} errors; service RSS ${before.toFixed(0)} → ${middle.toFixed(0)} → ${after.toFixed(0)} MiB`);
        }
      } finally {
        child.kill('SIGKILL');
      }
    }
  }
}
