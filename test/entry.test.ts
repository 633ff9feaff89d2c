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
