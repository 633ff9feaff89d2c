/**
 * The parts that keep a user's data safe, one by one: output folders that refuse what byol did not make, single
 * output files, a folder maker that cannot hang, temporary files named by their writer, the run lock, and readers
 * that never delete anything.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../src/errors.js';
import { processAlive, temporaryName, temporaryWriter, writeFileAtomic } from '../src/io/atomic.js';
import { ensureDir } from '../src/io/fs.js';
import { parseJsonLines } from '../src/io/jsonl.js';
import { loadLayersModelDir, saveLayersModelDir } from '../src/io/model-dir.js';
import { claimOutputFile, OUTPUT_MARKER, OutputDir } from '../src/io/output.js';
import { listCheckpoints, removeStaleTemporaries } from '../src/run/checkpoints.js';
import { LOCK_FILE, RunLock, runLockHolder } from '../src/run/lock.js';
import { nativeRebuildCommand, useBackend } from '../src/node.js';
import { demoVerdict } from '../src/cli/demo.js';

const root = mkdtempSync(join(tmpdir(), 'byol-output-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = join(root, `t${n++}`);
  mkdirSync(d);
  return d;
};
const refused = (code: string, pattern: RegExp) => (e: unknown) => e instanceof ByolError && e.code === code && pattern.test(e.message);

test('parseJsonLines: blank lines skipped; a bad last line dropped and said; a bad line elsewhere an error naming it', () => {
  const valid = (v: unknown): v is { n: number } => typeof v === 'object' && v !== null && typeof (v as { n?: unknown }).n === 'number';
  const cases: { text: string; want: number[] | number; torn?: number }[] = [
    { text: '', want: [] },
    { text: '{"n":1}\n\n{"n":2}\n', want: [1, 2] },
    { text: '{"n":1}\n{"n":2}', want: [1, 2] },
    { text: '{"n":1}\n{"n":', want: [1], torn: 5 }, // an append cut short
    { text: '{"n":1}\n{"n":2}\n{"x":3}\n\n', want: [1, 2], torn: 7 }, // JSON, but not a record, at the end
    { text: '{"n":1}\n{"n"\n{"n":3}\n', want: 2 }, // damage in the middle
    { text: '[1]\n{"n":2}\n', want: 1 },
  ];
  for (const c of cases) {
    const torn: number[] = [];
    const run = () => parseJsonLines(c.text, { valid, damaged: (line) => new ByolError('INVALID_DATA', `line ${line}`, 'f'), torn: (n) => torn.push(n) });
    if (typeof c.want === 'number') {
      assert.throws(run, (e: unknown) => e instanceof ByolError && e.code === 'INVALID_DATA' && e.message === `line ${c.want}`, JSON.stringify(c.text));
      continue;
    }
    const got = run();
    assert.deepEqual(got.map((r) => r.value.n), c.want, JSON.stringify(c.text));
    assert.deepEqual(torn, c.torn === undefined ? [] : [c.torn], JSON.stringify(c.text));
    got.forEach((r) => assert.equal(c.text.split('\n')[r.line - 1], r.text));
  }
});

test('OutputDir: a new or empty folder is claimed and marked; an earlier output of its kind is reused', async () => {
  const d = fresh();
  const a = await OutputDir.claim(join(d, 'new', 'deeper'), { kind: 'plots', names: ['a.svg'] });
  assert.equal(a.reused, false);
  await a.write('a.svg', '<svg/>');
  assert.deepEqual(JSON.parse(readFileSync(join(d, 'new', 'deeper', OUTPUT_MARKER), 'utf8')), { madeBy: 'byol', kind: 'plots', files: ['a.svg'] });
  mkdirSync(join(d, 'empty'));
  assert.equal((await OutputDir.claim(join(d, 'empty'), { kind: 'export', names: [] })).reused, false);
  const again = await OutputDir.claim(join(d, 'new', 'deeper'), { kind: 'plots', names: ['a.svg', 'b.svg'] });
  assert.equal(again.reused, true);
  await again.write('a.svg', '<svg>2</svg>');
  assert.equal(readFileSync(join(d, 'new', 'deeper', 'a.svg'), 'utf8'), '<svg>2</svg>');
});

test('OutputDir: a folder of other files is refused (nothing written) unless overwrite, which never replaces a file it did not write', async () => {
  const d = fresh();
  writeFileSync(join(d, 'photo.jpg'), 'mine');
  writeFileSync(join(d, 'model.json'), 'also mine');
  await assert.rejects(OutputDir.claim(d, { kind: 'export', names: ['weights.bin'] }), refused('OUTPUT_EXISTS', /not empty \(2 entries: "model\.json", "photo\.jpg"\) and not made by byol; .*--overwrite/));
  assert.deepEqual(readdirSync(d).sort(), ['model.json', 'photo.jpg']);
  await assert.rejects(OutputDir.claim(d, { kind: 'export', names: ['model.json'], overwrite: true }), refused('OUTPUT_EXISTS', /model\.json: exists and byol did not write it/));
  assert.deepEqual(readdirSync(d).sort(), ['model.json', 'photo.jpg']);
  const out = await OutputDir.claim(d, { kind: 'export', names: ['weights.bin'], overwrite: true });
  await out.write('weights.bin', 'w');
  await assert.rejects(out.write('photo.jpg', 'x'), refused('OUTPUT_EXISTS', /photo\.jpg: exists and byol did not write it/));
  await out.remove('photo.jpg'); // not byol's: nothing happens
  assert.equal(readFileSync(join(d, 'photo.jpg'), 'utf8'), 'mine');
  assert.equal(readFileSync(join(d, 'model.json'), 'utf8'), 'also mine');
  // Another kind of byol folder is refused even with overwrite.
  await assert.rejects(OutputDir.claim(d, { kind: 'plots', names: [], overwrite: true }), refused('OUTPUT_EXISTS', /holds a byol export, not byol's plots/));
});

test('OutputDir and claimOutputFile: a file where a folder should be, a folder where a file should be, /proc — one error each, no hang', async () => {
  const d = fresh();
  writeFileSync(join(d, 'f'), 'x');
  await assert.rejects(OutputDir.claim(join(d, 'f'), { kind: 'plots', names: [] }), refused('OUTPUT_EXISTS', /f: is a file/));
  await assert.rejects(OutputDir.claim(join(d, 'f', 'below'), { kind: 'plots', names: [] }), refused('WRITE_FAILED', /f\/below: cannot use it as an output folder: a part of the path is a file, not a folder \(ENOTDIR\)$/));
  await assert.rejects(claimOutputFile(d, false), refused('OUTPUT_EXISTS', /is a folder; name a file/));
  await assert.rejects(claimOutputFile(join(d, 'f'), false), refused('OUTPUT_EXISTS', /f: exists; pass --overwrite/));
  await claimOutputFile(join(d, 'f'), true);
  await claimOutputFile(join(d, 'new', 'g.npy'), false);
  assert.ok(existsSync(join(d, 'new')));
  // Node's own recursive mkdir loops forever here; ours fails once.
  await assert.rejects(ensureDir('/proc/byol-test/a/b'), refused('WRITE_FAILED', /^\/proc\/byol-test: cannot create the folder: .*\(ENOENT\)/));
  await assert.rejects(writeFileAtomic('/proc/byol-test.json', '{}'), (e: unknown) => e instanceof ByolError && e.code === 'WRITE_FAILED');
});

test('writeFileAtomic: temporary names carry the writer\'s pid; a failed write leaves the old content and no temporary file', async () => {
  const d = fresh();
  const name = temporaryName(join(d, 'x.byol'));
  assert.match(name, new RegExp(`x\\.byol\\.${process.pid}-[0-9a-f]{8}\\.tmp$`));
  assert.equal(temporaryWriter(name), process.pid);
  assert.equal(temporaryWriter('x.byol.0123456789ab.tmp'), null);
  await writeFileAtomic(join(d, 'x.byol'), 'old');
  mkdirSync(join(d, 'x.byol.dir'));
  await assert.rejects(writeFileAtomic(join(d, 'x.byol.dir'), 'new'), (e: unknown) => e instanceof ByolError && e.code === 'WRITE_FAILED' && /x\.byol\.dir: cannot write: .*nothing was replaced/.test(e.message));
  assert.deepEqual(readdirSync(d).sort(), ['x.byol', 'x.byol.dir']);
  assert.equal(readFileSync(join(d, 'x.byol'), 'utf8'), 'old');
});

/** A process that sleeps until killed: a live pid that is not this one. */
function sleeper(): { pid: number; stop: () => void } {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  return { pid: child.pid!, stop: () => child.kill('SIGKILL') };
}

test('listing checkpoints deletes nothing; only the lock holder removes temporaries, and only those of dead writers', async () => {
  const d = fresh();
  const ck = join(d, 'checkpoints');
  mkdirSync(ck);
  const live = sleeper();
  try {
    writeFileSync(join(ck, 'step-00000001.byol'), 'a');
    writeFileSync(join(ck, `step-00000002.byol.${live.pid}-aaaaaaaa.tmp`), 'being written');
    writeFileSync(join(ck, 'step-00000003.byol.999999999-bbbbbbbb.tmp'), 'from a dead writer');
    writeFileSync(join(ck, 'notes.tmp'), 'not a byol temporary');
    assert.deepEqual((await listCheckpoints(d)).map((c) => c.step), [1]);
    assert.equal(readdirSync(ck).length, 4, 'a listing changes nothing');
    assert.deepEqual(await removeStaleTemporaries(ck), ['step-00000003.byol.999999999-bbbbbbbb.tmp']);
    assert.deepEqual(readdirSync(ck).sort(), ['notes.tmp', 'step-00000001.byol', `step-00000002.byol.${live.pid}-aaaaaaaa.tmp`]);
  } finally {
    live.stop();
  }
});

test('RunLock: one holder at a time; a lock of a dead process is taken over; release removes only its own lock', async () => {
  const d = fresh();
  const lock = await RunLock.acquire(d);
  assert.equal((await runLockHolder(d))?.pid, process.pid);
  await assert.rejects(RunLock.acquire(d, 'runs/x'), refused('RUN_IN_USE', /^runs\/x: is being trained by process \d+ \(since /));
  await lock.release();
  assert.equal(existsSync(join(d, LOCK_FILE)), false);
  // A live process of another id holds it.
  const live = sleeper();
  try {
    writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: live.pid, host: hostname(), startedAt: 'then', processStart: null }));
    await assert.rejects(RunLock.acquire(d), refused('RUN_IN_USE', new RegExp(`process ${live.pid}`)));
  } finally {
    live.stop();
  }
  // Its holder died (or a reused pid with another start time): taken over.
  writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: 999999999, host: hostname(), startedAt: 'then', processStart: null }));
  const taken = await RunLock.acquire(d);
  assert.equal(JSON.parse(readFileSync(join(d, LOCK_FILE), 'utf8')).pid, process.pid);
  writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: process.pid, host: hostname(), startedAt: 'then', processStart: 'another-start' }));
  assert.equal(await runLockHolder(d), null, 'same pid, other process start: not the holder');
  // Another machine's lock cannot be checked: refused, with how to clear it.
  writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: 1, host: 'elsewhere', startedAt: 'then', processStart: null }));
  await assert.rejects(RunLock.acquire(d), refused('RUN_IN_USE', /process 1 on elsewhere .*delete .*run\.lock if that process is gone/));
  await taken.release();
  assert.ok(existsSync(join(d, LOCK_FILE)), 'not its lock any more: left alone');
  assert.equal(processAlive(999999999), false);
});

test('RunLock: of several processes racing for a stale lock, exactly one wins', async () => {
  const d = fresh();
  writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: 999999999, host: hostname(), startedAt: 'then', processStart: null }));
  const script = `import('${new URL('../src/run/lock.js', import.meta.url).href}').then(async (m) => { try { await m.RunLock.acquire(${JSON.stringify(d)}); console.log('won'); setTimeout(() => {}, 1500); } catch (e) { console.log(e.code); } })`;
  const runs = await Promise.all(
    Array.from({ length: 4 }, () => new Promise<string>((resolve) => {
      const c = spawn(process.execPath, ['-e', script]);
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('close', () => resolve(out.trim()));
    })),
  );
  assert.deepEqual(runs.sort(), ['RUN_IN_USE', 'RUN_IN_USE', 'RUN_IN_USE', 'won']);
});

test('saveLayersModelDir: weights under a content name, model.json points to them, an earlier export\'s weights go, a user file stays', async () => {
  await useBackend('cpu');
  const d = fresh();
  const make = (seed: number) => tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [3], units: 2, kernelInitializer: tfl.initializers.glorotUniform({ seed }) })] });
  const m1 = make(1);
  const m2 = make(2);
  await saveLayersModelDir(m1, join(d, 'm'), { extra: { 'byol.json': '{}' } });
  writeFileSync(join(d, 'm', 'README.txt'), 'mine');
  await saveLayersModelDir(m2, join(d, 'm'));
  const files = readdirSync(join(d, 'm')).sort();
  assert.equal(files.filter((f) => f.startsWith('weights-')).length, 1);
  assert.deepEqual(files.filter((f) => !f.startsWith('weights-')), [OUTPUT_MARKER, 'README.txt', 'byol.json', 'model.json']);
  const back = await loadLayersModelDir(join(d, 'm'));
  assert.deepEqual(back.getWeights()[0]!.dataSync(), m2.getWeights()[0]!.dataSync());
  // A folder from before markers (model.json by byol, weights.bin): recognized as an earlier export.
  mkdirSync(join(d, 'old'));
  writeFileSync(join(d, 'old', 'model.json'), JSON.stringify({ generatedBy: 'byol', modelTopology: {}, weightsManifest: [{ paths: ['weights.bin'], weights: [] }] }));
  writeFileSync(join(d, 'old', 'weights.bin'), '');
  await saveLayersModelDir(m1, join(d, 'old'));
  assert.equal(existsSync(join(d, 'old', 'weights.bin')), false);
  // A symlink to a user folder is the user folder: refused.
  mkdirSync(join(d, 'user'));
  writeFileSync(join(d, 'user', 'a.txt'), 'a');
  symlinkSync(join(d, 'user'), join(d, 'link'));
  await assert.rejects(saveLayersModelDir(m1, join(d, 'link')), refused('OUTPUT_EXISTS', /not empty/));
  for (const m of [m1, m2, back]) m.dispose();
});

test('the no-oneDNN notice names the command that rebuilds this install: npm rebuild byol as a dependency, npm run install in a clone', () => {
  assert.equal(nativeRebuildCommand('/home/u/app/node_modules/byol'), 'npm rebuild byol');
  assert.equal(nativeRebuildCommand('/home/u/src/byol'), 'npm run install (in /home/u/src/byol)');
});

test('the demo says plainly when BYOL is not ahead of the random init', () => {
  assert.equal(demoVerdict(0.73, 0.68, true, 1500), 'BYOL is 5.00 points ahead of the random init after 1500 steps.');
  assert.match(demoVerdict(0.7086, 0.7585, false, 600), /^BYOL is 4\.99 points below the random init: without the native backend the demo trains a small MLP on wasm, .* install oneDNN/);
  assert.match(demoVerdict(0.5, 0.5, true, 10), /^BYOL is level with the random init after 10 steps: too short a run/);
});
