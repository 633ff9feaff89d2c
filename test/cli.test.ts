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

test('without the native backend, pretrain trains the ConvNet on wasm (the command of issue 12, as written)', async () => {
  const { mkdtempSync, rmSync, readdirSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'byol-wasm-'));
  try {
    const out = join(dir, 'run');
    const r = runWithout('pretrain', 'fashion-mnist', '--out', out, '--limit', '256', '--epochs', '1', '--batch', '64');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /backend wasm[\s\S]*step 4\/4 [\s\S]*done: 4 steps; checkpoint \S+step-00000004\.byol; kNN top-1 \d+\.\d\d %/);
    assert.deepEqual(readdirSync(join(out, 'checkpoints')), ['step-00000004.byol']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the install script never fails: without oneDNN (or when told to skip) it explains and exits 0', () => {
  const script = fileURLToPath(new URL('../../scripts/build-native.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, BYOL_SKIP_NATIVE: '1' } });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /not building the native backend/);
});

test('a failed native build never fails the install: it names the oneDNN it tried and keeps the whole log in a known file', async () => {
  const { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  // A copy of the package's build inputs, so that this failed build cannot touch the repository's own addon.
  const dir = mkdtempSync(join(tmpdir(), 'byol-build-'));
  try {
    for (const p of ['package.json', 'scripts', 'native/binding.gyp', 'native/src']) cpSync(join(repo, p), join(dir, p), { recursive: true });
    symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
    // A "oneDNN" whose header is not oneDNN: the compiler fails at once.
    mkdirSync(join(dir, 'fake', 'include', 'oneapi', 'dnnl'), { recursive: true });
    writeFileSync(join(dir, 'fake', 'include', 'oneapi', 'dnnl', 'dnnl.hpp'), '#error this is not oneDNN\n');
    const r = spawnSync('npm', ['run', 'install'], { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...process.env, DNNL_ROOT: join(dir, 'fake'), BYOL_SKIP_NATIVE: '' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /byol: building the native backend against oneDNN from DNNL_ROOT=\S+fake/);
    assert.match(r.stdout, new RegExp(`byol: building the native backend failed \\(.*error.*\\); wasm will be used\\. The whole build log: ${join(dir, 'native', 'build-native.log').replace(/[.]/g, '\\.')}`));
    assert.match(readFileSync(join(dir, 'native', 'build-native.log'), 'utf8'), /this is not oneDNN/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('byol doctor: the backend and why, oneDNN and its instruction set, speed and estimates; without native, a warning naming the fix; exit 0', () => {
  const r = run('doctor', '--seconds', '0.2', '--json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { backend: string; onednn: { version: string; fp32: string } | null; speed: Record<string, number | null>; estimates: string[]; warnings: string[] };
  assert.ok(report.speed['ConvNet 28×28, batch 64']! > 1, JSON.stringify(report.speed));
  assert.match(report.estimates[0]!, /^byol pretrain fashion-mnist \(60 000 images × 100 epochs, ConvNet\): about [\d.]+ (s|min|h|days) at \d+ images\/s$/);
  if (report.backend === 'native') assert.match(`${report.onednn!.version} ${report.onednn!.fp32}`, /^[23]\.\d+\.\d+ \S+:\S+/);
  const without = runWithout('doctor', '--seconds', '0.2');
  assert.equal(without.status, 0, without.stderr);
  assert.match(without.stdout, /^backend: wasm — the native addon is unavailable \(disabled by BYOL_NATIVE=0\)$/m);
  assert.match(without.stdout, /^warning: native backend unavailable \(disabled by BYOL_NATIVE=0\): training runs on wasm .*install oneDNN/m);
});

test('byol: user errors exit non-zero with one clear line', () => {
  const cases: [string[], RegExp][] = [
    [['train'], /^byol: unknown command `train`/],
    [['demo', '--steps', '-3'], /^byol: --steps must be an integer ≥ 1; got "-3"$/],
    [['demo', '--backend', 'gpu'], /^byol: --backend must be one of native, wasm, cpu; got "gpu"$/],
    [['demo', '--bogus'], /^byol: unknown option --bogus for `byol demo`/],
    [['pretrain', 'folder:nowhere', '--out', 'never', '--preset', 'cifar', '--mean', '0.4,x,1', '--std', '1,1,1'], /^byol: --mean must be numbers separated by commas, one per channel \(R,G,B\); got "0\.4,x,1"$/],
    [['pretrain', 'folder:nowhere', '--out', 'never', '--preset', 'cifar', '--mean', '0.4,0.4', '--std', '1,1'], /^byol: mean must be 3 finite numbers \(one per channel of --preset cifar\), or unset; got \[0\.4, 0\.4\]$/],
    [['pretrain', 'folder:nowhere', '--out', 'never', '--preset', 'grey', '--mean', '0.4', '--std', '0'], /^byol: std must be 1 positive number \(one per channel of --preset grey\), or unset; got \[0\]$/],
    [['pretrain', 'folder:nowhere', '--out', 'never', '--preset', 'cifar', '--mean', '0.4,0.4,0.4'], /^byol: mean is given without std: give both \(the input normalization\) or neither$/],
  ];
  for (const [args, pattern] of cases) {
    const r = run(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr.trim(), pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  // A native-backend environment variable set to a value it does not take: refused when the backend registers (before
  // any data is read or anything written), whether or not the addon is built.
  const env = spawnSync(process.execPath, [main, 'demo', '--steps', '1', '--backend', 'native'], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, BYOL_NATIVE_CONV_MIRROR: 'off' } });
  assert.equal(env.status, 2, 'BYOL_NATIVE_CONV_MIRROR=off');
  assert.match(env.stderr.trim(), /^byol: environment variable BYOL_NATIVE_CONV_MIRROR must be "0" or "1" or "2"; got "off"$/);
  assert.equal(env.stderr.trim().split('\n').length, 1, 'one line');
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /byol demo/);
});
