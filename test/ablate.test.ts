/** `byol ablate`: grids, paired comparisons, claims against hand-made rows, and a tiny grid end to end (resume, skip). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { ablate, compare, gridVariants, judgeClaims, meanStd, pairedDifference, summarize, RANDOM_ID, type AblationSpec, type Row, type RunResult } from '../src/run/ablate.js';
import { resolvePretrainConfig } from '../src/run/config.js';
import { chartSvg } from '../src/run/plot.js';
import { loadNativeAddon, useBackend } from '../src/node.js';
import { ByolError } from '../src/errors.js';
import { dataset, main, skipNoData } from './cli-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'byol-ablate-'));
after(() => rmSync(root, { recursive: true, force: true }));

const base = resolvePretrainConfig({ dataset: 'fashion-mnist', preset: 'grey', encoder: 'convnet', tau: 0.99, batchSize: 128 });

test('grids: the variants and what each changes', () => {
  const ids = (g: Parameters<typeof gridVariants>[0], b = base) => gridVariants(g, b).map((v) => v.id);
  assert.deepEqual(ids('paper'), ['byol', 'tau-1', 'tau-0', 'no-predictor', 'beta-1']);
  // Base τ 0.99 is one of Table 5a's rows: that row is BYOL itself, not run twice.
  assert.deepEqual(ids('tau'), ['tau-0', 'tau-0.9', 'byol', 'tau-0.999', 'tau-1']);
  assert.deepEqual(ids('tau', { ...base, tau: 0.996 }), ['tau-0', 'tau-0.9', 'tau-0.99', 'byol', 'tau-0.999', 'tau-1']);
  const tau = gridVariants('tau', base);
  assert.deepEqual(tau.find((v) => v.id === 'tau-1')!.change, { tau: 1, tauSchedule: 'constant' });
  assert.deepEqual(tau.find((v) => v.id === 'tau-0.9')!.change, { tau: 0.9, tauSchedule: 'cosine' });
  assert.deepEqual(ids('batch'), ['batch-32', 'batch-64', 'byol', 'batch-256', 'batch-512']);
  // The learning rate is not set per batch: pretrain scales base × batch / 256 itself (App. B).
  assert.deepEqual(gridVariants('batch', base)[0]!.change, { batchSize: 32 });
  // Colour distortion exists only for three channels.
  assert.deepEqual(ids('augment'), ['byol', 'crop-flip', 'crop-only']);
  assert.deepEqual(ids('augment', resolvePretrainConfig({ dataset: 'cifar10:x', preset: 'cifar', encoder: 'convnet' })), ['byol', 'no-color', 'crop-flip', 'crop-only']);
  assert.deepEqual(gridVariants('predictor', base).map((v) => v.change), [{}, { predictor: false }]);
  assert.deepEqual(gridVariants('negatives', base)[1]!.change, { beta: 1 });
  assert.deepEqual(gridVariants('simsiam', base)[1]!.change, { mode: 'simsiam' });
});

test('mean ± sample std, and paired differences over common seeds', () => {
  assert.deepEqual(meanStd([2, 4, 4, 4, 5, 5, 7, 9]), { mean: 5, std: Math.sqrt(32 / 7), n: 8 });
  assert.deepEqual(meanStd([3]), { mean: 3, std: 0, n: 1 });
  const row = (id: string, bySeed: Record<number, number>): Row => {
    const v = Object.values(bySeed);
    return { id, label: id, paper: null, knn: meanStd(v), rank: meanStd(v.map(() => 10)), featureStd: meanStd(v.map(() => 0.05)), finalLoss: null, projectionSpread: null, dim: 128, bySeed };
  };
  // Seeds move both rows together (a 6-point spread over seeds) while b is steadily 1 point behind: paired, it shows.
  const a = row('a', { 0: 0.7, 1: 0.73, 2: 0.76 });
  const b = row('b', { 0: 0.69, 1: 0.72, 2: 0.75, 3: 0.1 });
  const d = pairedDifference(a, b);
  assert.equal(d.n, 3);
  assert.ok(Math.abs(d.mean - 0.01) < 1e-12 && d.std < 1e-12);
  assert.equal(compare(a, b), 'held');
  assert.equal(compare(b, a), 'contradicted');
  const noisy = row('c', { 0: 0.72, 1: 0.7, 2: 0.77 });
  assert.equal(compare(noisy, a), 'not shown');
  assert.equal(compare(row('one', { 0: 0.9 }), row('two', { 0: 0.1 })), 'not shown', 'one seed proves nothing');
});

test('claims: collapse, τ = 1 vs random, negatives, judged from results', () => {
  const results: RunResult[] = [];
  const add = (variant: string, knn: number[], rank: number) =>
    knn.forEach((k, seed) => results.push({ id: `${variant}-seed${seed}`, variant, seed, knn: k, rank, dim: 128, featureStd: 0.05, finalLoss: variant === RANDOM_ID ? null : 1, steps: 10, trainSeconds: 1, evalSeconds: 1 }));
  add('byol', [0.75, 0.77, 0.76], 40);
  add('tau-1', [0.71, 0.73, 0.72], 30);
  add('tau-0', [0.1, 0.11, 0.1], 1.2); // collapsed: chance level
  add('no-predictor', [0.66, 0.67, 0.66], 12); // partly: fewer directions, below random
  add('beta-1', [0.755, 0.765, 0.77], 42);
  add(RANDOM_ID, [0.69, 0.71, 0.7], 9);
  const rows = summarize(gridVariants('paper', base), results);
  assert.deepEqual(rows.map((r) => r.id), ['byol', 'tau-1', 'tau-0', 'no-predictor', 'beta-1', RANDOM_ID]);
  assert.ok(Math.abs(rows[0]!.knn.mean - 0.76) < 1e-12 && Math.abs(rows[0]!.knn.std - 0.01) < 1e-12);
  const claims = judgeClaims(rows, 10);
  const verdict = (re: RegExp) => claims.find((c) => re.test(c.claim))?.verdict;
  assert.equal(verdict(/^BYOL beats a random/), 'held');
  assert.equal(verdict(/fixed random target \(τ = 1\) already beats/), 'held');
  assert.equal(verdict(/^τ = 0/), 'held');
  assert.match(claims.find((c) => /^τ = 0/.test(c.claim))!.detail, /^collapsed/);
  assert.equal(verdict(/^removing the predictor/), 'held');
  assert.match(claims.find((c) => /^removing the predictor/.test(c.claim))!.detail, /^partly collapsed/);
  assert.equal(verdict(/negatives/), 'held', 'β = 1 level with BYOL within the noise: does not help');
  // A predictor-less run as good as BYOL did not collapse.
  const healthy = results.map((r) => (r.variant === 'no-predictor' ? { ...r, knn: r.knn + 0.1, rank: 40 } : r));
  assert.equal(judgeClaims(summarize(gridVariants('paper', base), healthy), 10).find((c) => /^removing/.test(c.claim))!.verdict, 'not shown');
  // Negatives that help by more than the noise contradict the claim.
  const helped = results.map((r) => (r.variant === 'beta-1' ? { ...r, knn: r.knn + 0.03 } : r));
  assert.equal(judgeClaims(summarize(gridVariants('paper', base), helped), 10).find((c) => /negatives/.test(c.claim))!.verdict, 'contradicted');
});

test('an overlay chart has one polyline and one legend entry per line', () => {
  const svg = chartSvg({ title: 't', lines: [{ label: 'BYOL', points: [[0, 1], [1, 2]] }, { label: 'τ = 0', points: [[0, 2], [1, 0.5]] }], format: String, xLabel: 'epoch' });
  assert.equal(svg.match(/<polyline/g)?.length, 2);
  assert.match(svg, />BYOL</);
  assert.match(svg, />τ = 0</);
  assert.match(svg, />epoch</);
});

const native = loadNativeAddon() !== null;
test('a tiny grid end to end: every run, the random row, the report; a stop resumes; a rerun skips; other settings are refused', { skip: skipNoData || (!native && 'needs the native backend (the ConvNet trains in seconds only there)') }, async () => {
  await useBackend('native');
  const spec: AblationSpec = {
    grid: 'predictor',
    base: resolvePretrainConfig({ dataset, preset: 'grey', encoder: 'convnet', limit: 256, epochs: 1, batchSize: 64, projectorHidden: 32, projectorOut: 16, predictorHidden: 32, lr: 1, larsEta: 0.02, tau: 0.99, diagnoseEvery: 2 }),
    seeds: [0, 1],
    bank: 300,
    test: 100,
    k: 20,
    temperature: 0.1,
  };
  const out = join(root, 'grid');
  const lines: string[] = [];
  // Stop after the first run's second step: its checkpoint is written, the grid stops.
  const stopped = await ablate({ outDir: out, spec, backend: { name: 'native', precision: 'fp32' }, command: 'byol ablate predictor …' }, {
    log: (l) => lines.push(l),
    shouldStop: () => lines.some((l) => /\[2\/6\] byol-seed0/.test(l)) && existsSync(join(out, 'runs', 'byol-seed0', 'metrics.jsonl')) && readFileSync(join(out, 'runs', 'byol-seed0', 'metrics.jsonl'), 'utf8').split('\n').length > 2,
  });
  assert.equal(stopped.status, 'stopped');
  assert.equal(stopped.ran, 0);
  const before = tf.memory().numTensors;
  const done = await ablate({ outDir: out, spec, backend: { name: 'native', precision: 'fp32' }, command: 'byol ablate predictor …' }, { log: (l) => lines.push(l) });
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  assert.equal(done.status, 'done');
  assert.equal(done.ran, 4);
  assert.equal(done.skipped, 1, 'the random init of seed 0 was measured before the stop');
  assert.ok(lines.some((l) => /byol-seed0: .*continuing its run/.test(l)), 'the stopped run resumed from its checkpoint');
  const results = (JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { runs: RunResult[] }).runs;
  assert.deepEqual(results.map((r) => r.id).sort(), ['byol-seed0', 'byol-seed1', 'no-predictor-seed0', 'no-predictor-seed1', 'random-init-seed0', 'random-init-seed1']);
  for (const r of results) {
    assert.ok(r.knn > 0.2 && r.knn <= 1, `${r.id}: kNN ${r.knn}`);
    assert.ok(r.rank >= 1 && r.rank <= r.dim, `${r.id}: rank ${r.rank}`);
    assert.equal(r.steps, r.variant === RANDOM_ID ? 0 : 4);
  }
  // Same seed, same start: the two variants of a seed differ, the random rows of two seeds differ.
  const knn = (id: string) => results.find((r) => r.id === id)!.knn;
  assert.notEqual(knn('random-init-seed0'), knn('random-init-seed1'));
  assert.deepEqual(done.rows.map((r) => [r.id, r.knn.n]), [['byol', 2], ['no-predictor', 2], [RANDOM_ID, 2]]);
  const md = readFileSync(join(out, 'ablation.md'), 'utf8');
  assert.match(md, /^# byol ablate predictor/);
  assert.match(md, /\| no predictor \| \d+\.\d\d ± \d+\.\d\d % \| 2 \|/);
  assert.match(md, /\| random init \(untrained\) \|.*\| 1\.4 % \(Table 5a\) \|/);
  assert.match(md, /removing the predictor collapses/);
  for (const f of ['loss.svg', 'rank.svg', 'collapse.svg']) assert.match(readFileSync(join(out, f), 'utf8'), /<polyline/);
  // A rerun finds everything done.
  const again = await ablate({ outDir: out, spec, backend: { name: 'native', precision: 'fp32' }, command: 'x' }, { log: () => undefined });
  assert.deepEqual([again.ran, again.skipped], [0, 6]);
  // Other settings into the same folder: refused, nothing changed.
  const listing = readdirSync(join(out, 'runs')).sort();
  await assert.rejects(
    ablate({ outDir: out, spec: { ...spec, base: { ...spec.base, epochs: 2 } }, backend: { name: 'native', precision: 'fp32' }, command: 'x' }, { log: () => undefined }),
    (e: unknown) => e instanceof ByolError && e.code === 'OUTPUT_EXISTS' && /epochs 1 → 2/.test(e.message),
  );
  assert.deepEqual(readdirSync(join(out, 'runs')).sort(), listing);
});

test('byol ablate: user errors are one line and exit 2, nothing written; --help lists the grids', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', cwd: root, timeout: 60_000 });
  const bad = cli('ablate', 'nope', 'fashion-mnist', '--out', 'x');
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, 'byol: GRID must be one of paper, tau, predictor, negatives, simsiam, batch, augment; got "nope"\n');
  const noOut = cli('ablate', 'paper', 'fashion-mnist');
  assert.equal(noOut.status, 2);
  assert.match(noOut.stderr, /^byol: `byol ablate` needs --out DIR/);
  const folder = cli('ablate', 'paper', 'fashion-mnist', '--out', 'y', '--encoder', 'some/model', '--backend', 'cpu');
  assert.equal(folder.status, 2);
  assert.match(folder.stderr, /^byol: byol ablate trains built-in encoders/);
  assert.ok(!existsSync(join(root, 'x')) && !existsSync(join(root, 'y')), 'nothing written');
  const help = cli('ablate', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /GRID: paper, tau, predictor, negatives, simsiam, batch, augment/);
  assert.match(help.stdout, /--epochs N +epochs \(ablate default 2\)/);
});
