import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('the README\'s library example runs as written', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /```js example\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has a ```js example block');
  // Run it from inside the package so that `import ... from 'byol'` resolves to this checkout.
  const dir = mkdtempSync(join(root, 'dist', 'readme-'));
  try {
    const file = join(dir, 'example.mjs');
    writeFileSync(file, block[1]!);
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 120_000, cwd: root });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /step 3: loss \d\.\d+/);
    assert.match(r.stdout, /features \[64,16\]/);
    assert.equal(r.stderr, '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
