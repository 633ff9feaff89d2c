import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const distSrc = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** Every module reachable from `entry` through relative imports, with the bare specifiers each one imports. */
function importGraph(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const text = readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
      (m) => m[1] ?? m[2] ?? m[3]!,
    );
    seen.set(file, specs.filter((s) => !s.startsWith('.')));
    for (const s of specs) if (s.startsWith('.')) visit(resolve(dirname(file), s));
  };
  visit(entry);
  return seen;
}

test('the main entry is browser-safe: nothing it reaches imports a Node built-in', () => {
  const graph = importGraph(resolve(distSrc, 'index.js'));
  assert.ok(graph.size > 5, 'the walk found the library modules');
  const builtins = new Set(['fs', 'path', 'os', 'url', 'child_process', 'worker_threads', 'crypto', 'stream', 'util', 'process']);
  for (const [file, specs] of graph) {
    for (const s of specs) {
      assert.ok(!s.startsWith('node:') && !builtins.has(s.split('/')[0]!), `${file} imports ${s}`);
    }
  }
});

test('package.json exports the browser-safe main entry and a separate node entry', () => {
  const pkg = JSON.parse(readFileSync(resolve(distSrc, '..', '..', 'package.json'), 'utf8'));
  assert.equal(pkg.exports['.'].default, './dist/src/index.js');
  assert.equal(pkg.exports['./node'].default, './dist/src/node.js');
});

test('sharp is optional: without it byol/node and the CLI load, image folders say how to get it, plots are SVG only', async () => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync, readdirSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { spawnSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'byol-nosharp-'));
  try {
    // A resolve hook that makes `sharp` missing, as after `npm install byol --omit=optional`.
    writeFileSync(join(dir, 'hooks.mjs'), "export async function resolve(s, c, next) { if (s === 'sharp') { const e = new Error(\"Cannot find package 'sharp'\"); e.code = 'ERR_MODULE_NOT_FOUND'; throw e; } return next(s, c); }\n");
    writeFileSync(join(dir, 'register.mjs'), "import { register } from 'node:module'; register('./hooks.mjs', import.meta.url);\n");
    const node = (args: string[]) => spawnSync(process.execPath, ['--import', join(dir, 'register.mjs'), ...args], { encoding: 'utf8' });
    const probe = node(['-e', "import('sharp').then(() => console.log('present'), () => console.log('missing'))"]);
    assert.equal(probe.stdout.trim(), 'missing', 'the hook hides sharp');
    const entry = node(['--input-type=module', '-e', `const m = await import(${JSON.stringify(resolve(distSrc, 'node.js'))}); console.log(typeof m.useBackend)`]);
    assert.equal(entry.stdout.trim(), 'function', entry.stderr);
    const main = resolve(distSrc, 'cli', 'main.js');
    mkdirSync(join(dir, 'pics'));
    writeFileSync(join(dir, 'pics', 'a.png'), 'not decoded: sharp is missing first');
    const run = node([main, 'pretrain', `folder:${join(dir, 'pics')}`, '--out', join(dir, 'run')]);
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /^byol: image folders are decoded with sharp, an optional dependency that is not installed here \(.*\); install it: npm install sharp$/m);
    mkdirSync(join(dir, 'fake-run'));
    writeFileSync(join(dir, 'fake-run', 'metrics.jsonl'), '{"type":"step","step":1,"epoch":1,"loss":3.9,"tau":0.996,"lr":0.1,"collapse":0.05,"imagesPerSecond":10,"elapsed":1}\n{"type":"step","step":2,"epoch":1,"loss":3.8,"tau":0.997,"lr":0.1,"collapse":0.05,"imagesPerSecond":10,"elapsed":2}\n');
    writeFileSync(join(dir, 'fake-run', 'config.json'), '{}\n');
    const plot = node([main, 'plot', join(dir, 'fake-run')]);
    assert.equal(plot.status, 0, plot.stderr);
    const files = readdirSync(join(dir, 'fake-run', 'plots'));
    assert.ok(files.includes('loss.svg') && !files.some((f) => f.endsWith('.png')), files.join(', '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
