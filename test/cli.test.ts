import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 });
const runWithout = (...args: string[]) =>
  spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, BYOL_NATIVE: '0' } });

test('byol demo: a short end-to-end run on real offline images prints progress and both kNN accuracies', () => {
  const r = run('demo', '--steps', '4', '--batch', '16', '--train', '400', '--test', '100');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^data: (Fashion-MNIST|MNIST)/m);
  assert.match(r.stdout, /step 4\/4 {2}loss \d+\.\d+ {2}collapse 0\.\d+/);
  const m = /BYOL (\d+\.\d+) %, random init (\d+\.\d+) %/.exec(r.stdout);
  assert.ok(m, r.stdout);
  for (const v of [m[1], m[2]]) assert.ok(Number(v) > 10 && Number(v) <= 100, `accuracy ${v} is above chance (10 %)`);
  assert.equal(r.stderr, '', 'no banner or warning on stderr');
});

test('byol demo without the native backend falls back to wasm (MLP) with a one-line notice naming the fix', () => {
  const r = runWithout('demo', '--steps', '2', '--batch', '16', '--train', '300', '--test', '50');
  assert.equal(r.status, 0, r.stderr);
  const notices = r.stdout.split('\n').filter((l) => l.startsWith('byol: native backend unavailable'));
  assert.equal(notices.length, 1);
  assert.match(notices[0]!, /disabled by BYOL_NATIVE=0.*using wasm.*apt-get install libdnnl-dev/);
  assert.match(r.stdout, /backend wasm; encoder MLP 784-512-512/);
  const m = /BYOL (\d+\.\d+) %, random init (\d+\.\d+) %\n(.*)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  // The last line says plainly where BYOL stands against the random init — also when it is behind.
  assert.match(m[3]!, Number(m[1]) > Number(m[2]) ? /^BYOL is \d+\.\d\d points ahead/ : /^BYOL is (\d+\.\d\d points below|level with) the random init: without the native backend the demo trains a small MLP on wasm/);
  const forced = runWithout('demo', '--backend', 'native', '--steps', '1');
  assert.equal(forced.status, 2);
  assert.match(forced.stderr.trim(), /^byol: option `backend`: the native addon is not built \(disabled by BYOL_NATIVE=0\); install oneDNN/);
});

test('the install script never fails: without oneDNN (or when told to skip) it explains and exits 0', () => {
  const script = fileURLToPath(new URL('../../scripts/build-native.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, BYOL_SKIP_NATIVE: '1' } });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /not building the native backend/);
});

test('byol: user errors exit non-zero with one clear line', () => {
  const cases: [string[], RegExp][] = [
    [['train'], /^byol: unknown command `train`/],
    [['demo', '--steps', '-3'], /^byol: --steps must be an integer ≥ 1; got "-3"$/],
    [['demo', '--backend', 'gpu'], /^byol: --backend must be one of native, wasm, cpu; got "gpu"$/],
    [['demo', '--bogus'], /^byol: unknown option --bogus for `byol demo`/],
  ];
  for (const [args, pattern] of cases) {
    const r = run(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr.trim(), pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /byol demo/);
});
