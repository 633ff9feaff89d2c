/** A static file server for the built page (web/dist), bound to 127.0.0.1: on a free port for the tests, or for `npm run web`. */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json',
  '.bin': 'application/octet-stream',
};

export async function serveStatic(root: string, port = 0, host = '127.0.0.1'): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(body),
      () => res.writeHead(404).end('not found'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const bound = (server.address() as { port: number }).port;
  return { url: `http://${host}:${bound}/`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

// `npm run web`: serve the built page on 127.0.0.1 (PORT, default 8080; HOST to listen elsewhere, on purpose only).
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  const { fileURLToPath } = await import('node:url');
  const site = fileURLToPath(new URL('../../web/dist', import.meta.url));
  const { url } = await serveStatic(site, Number(process.env['PORT'] ?? 8080), process.env['HOST'] ?? '127.0.0.1');
  console.log(`byol page: ${url} (serving ${site}; Ctrl-C stops)`);
}
