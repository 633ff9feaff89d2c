/**
 * `byol ablate`: the paper's ablations (Grill et al. 2020, §5, Table 5, Fig. 3) run as one resumable grid of
 * pretraining runs — every variant with the same seeds (so the same initial weights and data order per seed), the same
 * budget and the same evaluation — summarized as mean ± std over seeds beside the paper's ImageNet figures, with the
 * claims that held at this scale said in words. Node only (files).
 *
 * Layout of the output folder (a byol `ablation` folder; nothing else is written or removed):
 *   ablation.json   what the grid is (grid, base config, seeds, evaluation): a rerun must match it
 *   results.json    one record per finished run (and per seed of the random-init row), written after each
 *   runs/ID/        each run, a normal `byol pretrain` folder (resumable, evaluable, exportable)
 *   ablation.md     the table, the claims, the plots (rewritten after every run)
 *   loss.svg, rank.svg, collapse.svg (+ .png where sharp is installed): curves overlaid, mean over seeds
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Byol } from '../byol/learner.js';
import { parseDatasetSpec } from '../data/spec.js';
import { ByolError } from '../errors.js';
import { knnAccuracy } from '../eval/knn.js';
import { effectiveRank, normalizedStd } from '../eval/rank.js';
import { OutputDir } from '../io/output.js';
import { shownPath } from '../io/paths.js';
import { isBuiltinEncoder, learnerOptions, resolvePretrainConfig, runViews, type BackendRecord, type PretrainConfig } from './config.js';
import { learnerFromCheckpoint, listCheckpoints } from './checkpoints.js';
import { openEvalSets, type EvalSets } from './data.js';
import { evalInputOf, measureFeatures, StopRequested } from './features.js';
import { chartSvg, formatTick, readMetrics, svgRasterizer } from './plot.js';
import { pretrain, readRunRecord, type MetricsRecord } from './pretrain.js';

export const ABLATION_GRIDS = ['paper', 'tau', 'predictor', 'negatives', 'simsiam', 'batch', 'augment'] as const;
export type AblationGrid = (typeof ABLATION_GRIDS)[number];

/** One configuration of a grid: a change to the base config. */
export interface Variant {
  readonly id: string;
  readonly label: string;
  readonly change: Partial<PretrainConfig>;
  /** The paper's ImageNet linear top-1 for this configuration (300 epochs, ResNet-50), with its source; null: none. */
  readonly paper: string | null;
}

/** The id of the random-init row (the weights every variant of a seed starts from, evaluated untrained). */
export const RANDOM_ID = 'random-init';

const BYOL_PAPER = '72.5 % (τ_base 0.996, Table 5a)';

/** The variants of a grid for a base config (the base is the `byol` row; its τ is the grid's cosine τ_base). */
export function gridVariants(grid: AblationGrid, base: PretrainConfig): Variant[] {
  const tauBase = base.tau ?? 0.996;
  const byol: Variant = { id: 'byol', label: `BYOL (τ ${tauBase} → 1, cosine)`, change: {}, paper: BYOL_PAPER };
  const tau = (t: number, schedule: 'cosine' | 'constant', paper: string | null): Variant => ({
    id: `tau-${t}${schedule === 'constant' && t !== 0 && t !== 1 ? '-constant' : ''}`,
    label: t === 1 ? 'τ = 1 (fixed random target)' : t === 0 ? 'τ = 0 (target = online)' : `τ_base ${t} → 1, cosine`,
    change: { tau: t, tauSchedule: schedule },
    paper,
  });
  const noPredictor: Variant = { id: 'no-predictor', label: 'no predictor', change: { predictor: false }, paper: '0.2–0.3 % (Table 5b: collapsed)' };
  const negatives: Variant = { id: 'beta-1', label: 'β = 1 (in-batch negatives)', change: { beta: 1 }, paper: '70.9 % (Table 5b)' };
  switch (grid) {
    case 'paper':
      return [byol, tau(1, 'constant', '18.8 % (Table 5a; random encoder 1.4 %)'), tau(0, 'constant', '0.3 % (Table 5a: collapsed)'), noPredictor, negatives];
    case 'tau': {
      // Table 5a's τ_base rows use the cosine schedule to 1 (§3.3); τ = 0 and τ = 1 are constant by definition.
      const rows = [tau(0, 'constant', '0.3 % (collapsed)'), tau(0.9, 'cosine', '68.4 %'), tau(0.99, 'cosine', '72.1 %')];
      if (tauBase !== 0.99 && tauBase !== 0.9 && tauBase !== 0.999) rows.push(byol);
      rows.push(tau(0.999, 'cosine', '69.8 %'), tau(1, 'constant', '18.8 %'));
      return rows.map((r) => (r.change.tau === tauBase && r.change.tauSchedule === 'cosine' ? { ...r, id: 'byol', label: `BYOL (${r.label})` } : r));
    }
    case 'predictor':
      return [byol, noPredictor];
    case 'negatives':
      return [byol, negatives];
    case 'simsiam':
      // SimSiam (Chen & He 2021) is not in the BYOL paper: no target network, the stop-gradient alone.
      return [byol, { id: 'simsiam', label: 'SimSiam (no moving average)', change: { mode: 'simsiam' }, paper: null }];
    case 'batch': {
      // Fig. 3a: the learning rate follows the batch (base × batch / 256, App. B), as `pretrain` always does.
      const sizes = [...new Set([32, 64, base.batchSize, 2 * base.batchSize, 4 * base.batchSize])].sort((a, b) => a - b);
      return sizes.map((b) => (b === base.batchSize ? { ...byol, label: `${byol.label}, batch ${b}` } : { id: `batch-${b}`, label: `batch ${b}`, change: { batchSize: b }, paper: null }));
    }
    case 'augment': {
      // Fig. 3b / Table 17. Colour jitter exists only for three-channel presets.
      const rows: Variant[] = [{ ...byol, label: `${byol.label}, all views` }];
      if (runViews(base).channels === 3) rows.push({ id: 'no-color', label: 'no colour distortion', change: { ablation: 'no-color' }, paper: null });
      rows.push({ id: 'crop-flip', label: 'crop + flip only', change: { ablation: 'crop-flip' }, paper: null }, { id: 'crop-only', label: 'crop only', change: { ablation: 'crop-only' }, paper: null });
      return rows;
    }
  }
}

/** The grids' defaults for the base run: short-schedule settings that finish a `paper` grid in about an hour here. */
export const ABLATE_DEFAULTS = {
  epochs: 2,
  batchSize: 128,
  // solo-learn's short-schedule LARS setting (base lr 1.0, η 0.02) and heads 1024 → 128, as the README's CLI runs.
  lr: 1.0,
  larsEta: 0.02,
  projectorHidden: 1024,
  projectorOut: 128,
  predictorHidden: 1024,
  // 0.99 rather than the paper's 0.996: a run of a thousand steps needs a faster target (the paper trains 300 epochs).
  tau: 0.99,
} as const satisfies Partial<PretrainConfig>;

export interface AblationSpec {
  readonly grid: AblationGrid;
  /** The base run (dataset, encoder, budget); each variant changes it. */
  readonly base: PretrainConfig;
  readonly seeds: readonly number[];
  /** Evaluation: weighted kNN, bank = first `bank` training images, queries = first `test` test images. */
  readonly bank: number;
  readonly test: number;
  readonly k: number;
  readonly temperature: number;
}

/** What one finished run (or one seed's random init) measured. */
export interface RunResult {
  readonly id: string;
  readonly variant: string;
  readonly seed: number;
  /** kNN top-1 on the test images. */
  readonly knn: number;
  /** RankMe of the encoder features of the test images, and their dimension. */
  readonly rank: number;
  readonly dim: number;
  /** Normalized spread of those features (≈ 1/√dim healthy, → 0 collapsed). */
  readonly featureStd: number;
  /** Mean loss over the last tenth of the run's steps (null for the random init). */
  readonly finalLoss: number | null;
  /**
   * Spread of the l2-normalized projections over the last tenth of the steps (the step's collapse metric: ≈ 1/√d
   * healthy, → 0 collapsed); null for the random init.
   */
  readonly projectionSpread?: number | null;
  readonly steps: number;
  /** Pretraining seconds (from the run's metrics.jsonl, every resumed part summed), and evaluation seconds. */
  readonly trainSeconds: number;
  readonly evalSeconds: number;
}

/** Mean and sample standard deviation (0 for one value). */
export function meanStd(values: readonly number[]): { mean: number; std: number; n: number } {
  const n = values.length;
  if (n === 0) return { mean: NaN, std: NaN, n };
  const mean = values.reduce((s, x) => s + x, 0) / n;
  const std = n < 2 ? 0 : Math.sqrt(values.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1));
  return { mean, std, n };
}

export interface Row {
  readonly id: string;
  readonly label: string;
  readonly paper: string | null;
  readonly knn: { mean: number; std: number; n: number };
  readonly rank: { mean: number; std: number; n: number };
  readonly featureStd: { mean: number; std: number; n: number };
  readonly finalLoss: { mean: number; std: number; n: number } | null;
  readonly projectionSpread: { mean: number; std: number; n: number } | null;
  readonly dim: number;
  /** kNN top-1 per seed (for paired comparisons: every variant of a seed starts from the same weights). */
  readonly bySeed: Readonly<Record<number, number>>;
}

/** Summary rows: the grid's variants, then the random init; rows without results are left out. */
export function summarize(variants: readonly Variant[], results: readonly RunResult[]): Row[] {
  const rows: Row[] = [];
  for (const v of [...variants, { id: RANDOM_ID, label: 'random init (untrained)', change: {}, paper: '1.4 % (Table 5a)' }]) {
    const mine = results.filter((r) => r.variant === v.id);
    if (mine.length === 0) continue;
    const losses = mine.map((r) => r.finalLoss).filter((x): x is number => x !== null);
    const spreads = mine.map((r) => r.projectionSpread ?? null).filter((x): x is number => x !== null);
    rows.push({
      id: v.id,
      label: v.label,
      paper: v.paper,
      knn: meanStd(mine.map((r) => r.knn)),
      rank: meanStd(mine.map((r) => r.rank)),
      featureStd: meanStd(mine.map((r) => r.featureStd)),
      finalLoss: losses.length ? meanStd(losses) : null,
      projectionSpread: spreads.length ? meanStd(spreads) : null,
      dim: mine[0]!.dim,
      bySeed: Object.fromEntries(mine.map((r) => [r.seed, r.knn])),
    });
  }
  return rows;
}

export type Verdict = 'held' | 'not shown' | 'contradicted';

export interface Claim {
  readonly claim: string;
  readonly verdict: Verdict;
  /** The measured figures behind the verdict, in words. */
  readonly detail: string;
}

const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
const pm = (s: { mean: number; std: number }) => `${(100 * s.mean).toFixed(2)} ± ${(100 * s.std).toFixed(2)} %`;

/** The paired kNN differences a − b over the seeds both rows have: mean, sample std and count. */
export function pairedDifference(a: Row, b: Row): { mean: number; std: number; n: number } {
  const seeds = Object.keys(a.bySeed).filter((s) => s in b.bySeed);
  return meanStd(seeds.map((s) => a.bySeed[Number(s)]! - b.bySeed[Number(s)]!));
}

/**
 * Whether a beats b on kNN beyond the seeds' noise. Every variant of a seed starts from the same weights and reads the
 * same data order, so the comparison is paired: `held` when the mean of the per-seed differences a − b exceeds their
 * standard deviation, `contradicted` when −mean does, else `not shown` (always with fewer than 2 common seeds).
 */
export function compare(a: Row, b: Row): Verdict {
  const d = pairedDifference(a, b);
  if (d.n < 2) return 'not shown';
  return d.mean > d.std ? 'held' : -d.mean > d.std ? 'contradicted' : 'not shown';
}

const diffText = (a: Row, b: Row) => {
  const d = pairedDifference(a, b);
  return `paired difference ${d.mean >= 0 ? '+' : '−'}${(100 * Math.abs(d.mean)).toFixed(2)} ± ${(100 * d.std).toFixed(2)} points over ${d.n} seed${d.n === 1 ? '' : 's'}`;
};

/**
 * A collapsed encoder maps every image to (nearly) one point: kNN near chance (at most twice 1/classes) or an
 * effective rank under 2. Partial: effective rank under half of BYOL's and kNN below the random init.
 */
function collapseClaim(name: string, row: Row, byol: Row | undefined, random: Row | undefined, classes: number, paper: string): Claim {
  const claim = `${name} collapses (paper: ${paper})`;
  const figures = `kNN ${pm(row.knn)}, effective rank ${row.rank.mean.toFixed(1)} of ${row.dim}${byol ? ` (BYOL ${pm(byol.knn)}, rank ${byol.rank.mean.toFixed(1)})` : ''}${random ? `; random init ${pm(random.knn)}` : ''}`;
  if (row.knn.mean <= 2 / classes || row.rank.mean < 2) return { claim, verdict: 'held', detail: `collapsed: ${figures}` };
  if (byol && random && row.rank.mean < 0.5 * byol.rank.mean && row.knn.mean < random.knn.mean) {
    return { claim, verdict: 'held', detail: `partly collapsed (features on fewer directions, below the random init): ${figures}` };
  }
  const p = row.projectionSpread?.mean;
  const q = byol?.projectionSpread?.mean;
  const projector = p !== undefined && q !== undefined && p < 0.5 * q ? `; its projections' spread fell to ${p.toFixed(3)} (BYOL ${q.toFixed(3)}): the projector collapsed partway, the encoder did not` : '';
  return { claim, verdict: 'not shown', detail: `no collapse of the encoder at this scale: ${figures}${projector}` };
}

/** The paper's claims that the grid's rows can test, each with its verdict at this scale. */
export function judgeClaims(rows: readonly Row[], classes: number, smallestBatch?: string): Claim[] {
  const get = (id: string) => rows.find((r) => r.id === id);
  const byol = get('byol');
  const random = get(RANDOM_ID);
  const claims: Claim[] = [];
  const beats = (claim: string, a: Row, b: Row) => {
    claims.push({ claim, verdict: compare(a, b), detail: `${a.label} ${pm(a.knn)} vs ${b.label} ${pm(b.knn)} (${diffText(a, b)})` });
  };
  if (byol && random) beats('BYOL beats a random encoder of the same architecture (paper: 72.5 % vs 1.4 %)', byol, random);
  const tau1 = get('tau-1');
  if (tau1 && random) beats('a fixed random target (τ = 1) already beats a random encoder (paper: 18.8 % vs 1.4 %)', tau1, random);
  if (tau1 && byol) beats('a moving-average target beats a fixed random one (paper: 72.5 % vs 18.8 %)', byol, tau1);
  const tau0 = get('tau-0');
  if (tau0) claims.push(collapseClaim('τ = 0 (the target is the online network)', tau0, byol, random, classes, '0.3 %'));
  const noPred = get('no-predictor');
  if (noPred) claims.push(collapseClaim('removing the predictor', noPred, byol, random, classes, '0.2–0.3 %'));
  const beta = get('beta-1');
  if (beta && byol) {
    const v = compare(beta, byol);
    claims.push({
      claim: 'adding in-batch negatives (β = 1) does not help (paper: 70.9 % vs 72.5 %)',
      verdict: v === 'held' ? 'contradicted' : 'held',
      detail: `β = 1 ${pm(beta.knn)} vs BYOL ${pm(byol.knn)} (${diffText(beta, byol)})${v === 'held' ? ': the negatives helped here by more than the spread' : v === 'contradicted' ? ': the negatives hurt' : ': level within the spread'}`,
    });
  }
  const cosine = rows.filter((r) => r.id === 'byol' || /^tau-0\.\d+$/.test(r.id));
  if (cosine.length >= 3) {
    const best = [...cosine].sort((a, b) => b.knn.mean - a.knn.mean)[0]!;
    const near = cosine.filter((r) => r === best || compare(best, r) !== 'held');
    const tauOf = (r: Row) => (r.id === 'byol' ? (r.label.match(/τ(?:_base)? ([\d.]+)/)?.[1] ?? '?') : r.id.slice(4));
    const good = near.some((r) => ['0.99', '0.996'].includes(tauOf(r)));
    claims.push({
      claim: 'a τ_base near 0.99–0.996 is best among moving averages (paper: 0.9 → 68.4, 0.99 → 72.1, 0.996 → 72.5, 0.999 → 69.8)',
      verdict: good ? 'held' : 'not shown',
      detail: `best: ${best.label} ${pm(best.knn)}; within the spread of it: ${near.map((r) => `τ_base ${tauOf(r)}`).join(', ')}`,
    });
  }
  const simsiam = get('simsiam');
  if (simsiam && byol) {
    claims.push({ claim: 'the moving-average target helps over the stop-gradient alone (SimSiam, Chen & He 2021; not a figure of the BYOL paper)', verdict: compare(byol, simsiam) === 'held' ? 'held' : 'not shown', detail: `BYOL ${pm(byol.knn)} vs SimSiam ${pm(simsiam.knn)} (${diffText(byol, simsiam)}; held: BYOL ahead beyond the noise)` });
  }
  const batches = rows.filter((r) => r.id.startsWith('batch-') || (smallestBatch !== undefined && r.id === 'byol'));
  if (batches.length >= 2 && smallestBatch !== undefined) {
    const best = [...batches].sort((a, b) => b.knn.mean - a.knn.mean)[0]!;
    const small = get(smallestBatch) ?? batches[0]!;
    const v = best === small ? 'not shown' : compare(best, small);
    claims.push({
      claim: 'BYOL keeps its accuracy at smaller batches, with the learning rate scaled (paper Fig. 3a: stable from 4096 down to 256 images)',
      verdict: v === 'held' ? 'not shown' : 'held',
      detail: `best: ${best.label} ${pm(best.knn)}; smallest: ${small.label} ${pm(small.knn)}${best === small ? '' : ` (${diffText(best, small)})`}${v === 'held' ? ' — below the best beyond the noise' : ' — level with the best within the noise'}`,
    });
  }
  const what: Record<string, string> = { 'no-color': 'colour distortion', 'crop-flip': 'every view change but the crop and the flip', 'crop-only': 'every view change but the crop' };
  for (const r of [get('no-color'), get('crop-flip'), get('crop-only')]) {
    if (!r || !byol) continue;
    const drop = byol.knn.mean - r.knn.mean;
    claims.push({
      claim: `removing ${what[r.id]} costs BYOL points (paper Fig. 3b: fewer than contrastive SimCLR loses)`,
      verdict: compare(byol, r) === 'held' ? 'held' : 'not shown',
      detail: `${r.label} ${pm(r.knn)} vs all views ${pm(byol.knn)}: ${drop >= 0 ? `−${(100 * drop).toFixed(2)}` : `+${(100 * -drop).toFixed(2)}`} points (${diffText(byol, r)})`,
    });
  }
  return claims;
}

export interface AblateArgs {
  readonly outDir: string;
  readonly spec: AblationSpec;
  readonly backend: BackendRecord;
  /** The command line, recorded in ablation.md so that the table can be reproduced. */
  readonly command: string;
  /** Start in a non-empty folder byol did not make, beside its files (none replaced). */
  readonly overwrite?: boolean;
}

export interface AblateHooks {
  readonly log: (line: string) => void;
  readonly shouldStop?: () => boolean;
}

export interface AblateResult {
  readonly status: 'done' | 'stopped';
  readonly ran: number;
  readonly skipped: number;
  readonly rows: readonly Row[];
  readonly claims: readonly Claim[];
  readonly files: readonly string[];
}

const SPEC_FILE = 'ablation.json';
const RESULTS_FILE = 'results.json';
const RUNS_DIR = 'runs';
const PLOTS = ['loss', 'rank', 'collapse'] as const;

/** What must match for a rerun to continue an ablation (seeds may grow). */
function specDifferences(a: AblationSpec, b: AblationSpec): string[] {
  const diff: string[] = [];
  for (const key of ['grid', 'bank', 'test', 'k', 'temperature'] as const) if (a[key] !== b[key]) diff.push(`${key} ${JSON.stringify(a[key])} → ${JSON.stringify(b[key])}`);
  for (const key of Object.keys({ ...a.base, ...b.base }) as (keyof PretrainConfig)[]) {
    if (JSON.stringify(a.base[key]) !== JSON.stringify(b.base[key])) diff.push(`${key} ${JSON.stringify(a.base[key])} → ${JSON.stringify(b.base[key])}`);
  }
  return diff;
}

/**
 * What a run's metrics say at its end: mean loss and projection spread over the last tenth of its steps (null without
 * steps), and its pretraining seconds (a resumed run restarts its clock, so the segments are summed).
 */
export function runSummary(metrics: readonly MetricsRecord[]): { finalLoss: number | null; projectionSpread: number | null; trainSeconds: number } {
  const steps = metrics.filter((x): x is Extract<MetricsRecord, { type: 'step' }> => x.type === 'step');
  const tail = steps.slice(Math.floor(steps.length * 0.9));
  const mean = (f: (x: (typeof tail)[number]) => number) => (tail.length ? tail.reduce((s, x) => s + f(x), 0) / tail.length : null);
  let trainSeconds = 0;
  steps.forEach((x, i) => {
    const next = steps[i + 1];
    if (!next || next.elapsed < x.elapsed) trainSeconds += x.elapsed;
  });
  return { finalLoss: mean((x) => x.loss), projectionSpread: mean((x) => x.collapse), trainSeconds };
}

/** Mean over seeds of a per-step series, by epoch, in at most `buckets` averaged points. */
function meanCurve(series: readonly (readonly [number, number])[][], stepsPerEpoch: number, buckets = 120): [number, number][] {
  const sums = new Map<number, { s: number; n: number }>();
  const last = Math.max(0, ...series.flat().map((p) => p[0]));
  const width = Math.max(1, Math.ceil(last / buckets));
  for (const pts of series) {
    for (const [step, y] of pts) {
      if (!Number.isFinite(y)) continue;
      const b = Math.ceil(step / width);
      const e = sums.get(b) ?? { s: 0, n: 0 };
      e.s += y;
      e.n += 1;
      sums.set(b, e);
    }
  }
  return [...sums.entries()].sort((a, b) => a[0] - b[0]).map(([b, e]) => [Math.min(b * width, last) / stepsPerEpoch, e.s / e.n]);
}

/**
 * Runs (or continues) an ablation grid in `outDir`: every variant × seed a pretraining run in runs/ID/ (finished
 * and evaluated runs are skipped; a stopped one is resumed from its checkpoint), plus the random-init row per seed;
 * writes results.json after each and ablation.md + overlaid curves as the rows fill in.
 */
export async function ablate(args: AblateArgs, hooks: AblateHooks): Promise<AblateResult> {
  const outDir = resolve(args.outDir);
  const shown = shownPath(outDir);
  let spec = args.spec;
  if (!isBuiltinEncoder(spec.base.encoder)) {
    throw new ByolError('INVALID_OPTION', `byol ablate trains built-in encoders (so that every seed's random init is reproducible); got ${spec.base.encoder}`, 'encoder');
  }
  if (spec.seeds.length === 0) throw new ByolError('INVALID_OPTION', 'seeds: give at least one', 'seeds');
  const variants = gridVariants(spec.grid, spec.base);
  const names = [SPEC_FILE, RESULTS_FILE, RUNS_DIR, 'ablation.md', ...PLOTS.flatMap((p) => [`${p}.svg`, `${p}.png`])];
  // A rerun continues only the same grid: compare before claiming anything.
  let previous: AblationSpec | null = null;
  try {
    previous = JSON.parse(await readFile(join(outDir, SPEC_FILE), 'utf8')) as AblationSpec;
  } catch {
    previous = null;
  }
  if (previous) {
    const diff = specDifferences(previous, spec);
    if (diff.length) throw new ByolError('OUTPUT_EXISTS', `${shown} holds an ablation with other settings (${diff.join('; ')}); rerun with its settings to continue it, or choose another --out`, 'out');
    spec = { ...spec, seeds: [...new Set([...previous.seeds, ...spec.seeds])] };
  }
  // The data opens (or fails, naming it) before anything is written.
  const views = runViews(spec.base);
  const input = evalInputOf(views);
  const sets: EvalSets = await openEvalSets({ ...parseDatasetSpec(spec.base.dataset), split: null }, spec.base, views);
  let out: OutputDir;
  let runsDir: string;
  try {
    if (!sets.bank.classes) throw new ByolError('INVALID_DATA', `${spec.base.dataset}: has no labels; byol ablate compares the variants by kNN accuracy, which needs them (class sub-folders for an image folder)`, 'dataset');
    out = await OutputDir.claim(outDir, { kind: 'ablation', names, ...(args.overwrite ? { overwrite: true } : {}) });
    await out.write(SPEC_FILE, `${JSON.stringify(spec, null, 2)}\n`);
    runsDir = await out.folder(RUNS_DIR);
  } catch (e) {
    await Promise.all([sets.bank.close(), sets.test.close()]);
    throw e;
  }
  let results: RunResult[] = [];
  try {
    results = (JSON.parse(await readFile(join(outDir, RESULTS_FILE), 'utf8')) as { runs: RunResult[] }).runs;
  } catch {
    results = [];
  }
  // Results written before projection spreads were recorded: fill them in from the runs' metrics.
  for (const [i, r] of results.entries()) {
    if (r.variant === RANDOM_ID || r.projectionSpread !== undefined) continue;
    const metrics = await readMetrics(join(outDir, RUNS_DIR, r.id)).catch((): MetricsRecord[] => []);
    results[i] = { ...r, projectionSpread: runSummary(metrics).projectionSpread };
  }
  const saveResults = () => out.write(RESULTS_FILE, `${JSON.stringify({ runs: results }, null, 2)}\n`);

  const classes = sets.bank.classes?.length ?? 10;
  const shouldStop = () => hooks.shouldStop?.() ?? false;
  const started = Date.now();
  let ran = 0;
  let skipped = 0;
  let status: 'done' | 'stopped' = 'done';

  /** kNN, effective rank and spread of an encoder on the evaluation sets. */
  const evaluate = (embed: (x: tf.Tensor4D) => tf.Tensor2D) =>
    measureFeatures(sets.bank, spec.bank, sets.test, spec.test, input, embed, async (a, b) => {
      const knn = await knnAccuracy(a.features, a.labels, b.features, b.labels, { k: spec.k, temperature: spec.temperature });
      const [n, dim] = b.features.shape;
      const data = (await b.features.data()) as Float32Array;
      return { knn, rank: effectiveRank(data, n, dim), featureStd: normalizedStd(data, n, dim), dim };
    }, shouldStop);

  const write = async () => {
    const rows = summarize(variants, results);
    const claims = judgeClaims(rows, classes, spec.grid === 'batch' ? variants[0]!.id : undefined);
    const files = await writeReport(out, spec, variants, rows, claims, results, args, runsDir, (Date.now() - started) / 1000);
    return { rows, claims, files };
  };

  try {
    const total = spec.seeds.length * (variants.length + 1);
    let index = 0;
    for (const seed of spec.seeds) {
      // The random init of this seed: the weights every variant of the seed starts from.
      index++;
      const randomId = `${RANDOM_ID}-seed${seed}`;
      if (!results.some((r) => r.id === randomId)) {
        const t0 = Date.now();
        // Steps do not change the initial weights; enough of them for any warm-up setting.
        const learner = new Byol(learnerOptions({ ...spec.base, seed }, 1000, null));
        try {
          const m = await evaluate((x) => learner.embed(x));
          results.push({ id: randomId, variant: RANDOM_ID, seed, ...m, finalLoss: null, steps: 0, trainSeconds: 0, evalSeconds: (Date.now() - t0) / 1000 });
        } finally {
          learner.dispose();
        }
        await saveResults();
        hooks.log(`[${index}/${total}] ${randomId}: kNN ${pct(results[results.length - 1]!.knn)}, effective rank ${results[results.length - 1]!.rank.toFixed(1)}`);
      } else skipped++;
      for (const v of variants) {
        index++;
        const id = `${v.id}-seed${seed}`;
        if (results.some((r) => r.id === id)) {
          skipped++;
          continue;
        }
        const runDir = join(runsDir, id);
        const config = resolvePretrainConfig({ ...spec.base, ...v.change, seed, knnEvery: 0 });
        const record = await readRunRecord(runDir);
        const resume = record !== null && (await listCheckpoints(runDir)).length > 0;
        hooks.log(`[${index}/${total}] ${id}: ${v.label}, seed ${seed}${resume ? ' (continuing its run)' : ''}`);
        let lastLine = Date.now();
        const r = await pretrain(
          { outDir: runDir, ...(resume ? { resume: true } : { config }), backend: args.backend, evaluate: false },
          {
            log: (l) => (/^(run|resuming) /.test(l) ? undefined : hooks.log(`  ${l}`)),
            onStep: (s, info) => {
              if (Date.now() - lastLine < 30_000 && s.step !== info.totalSteps) return;
              lastLine = Date.now();
              const d = info.diagnostics;
              hooks.log(`  ${id}: step ${s.step}/${info.totalSteps}  loss ${s.loss.toFixed(4)}${d ? `  rank ${d.featureRank.toFixed(1)}/${Math.min(d.batch, d.featureDim)}` : ''}  ${info.imagesPerSecond.toFixed(0)} img/s`);
            },
            shouldStop,
          },
        );
        if (r.status === 'stopped') {
          status = 'stopped';
          break;
        }
        const t1 = Date.now();
        const { learner, meta } = await learnerFromCheckpoint(runDir);
        let m;
        try {
          m = await evaluate((x) => learner.embed(x));
        } finally {
          learner.dispose();
        }
        const { finalLoss, projectionSpread, trainSeconds } = runSummary(await readMetrics(runDir));
        results.push({ id, variant: v.id, seed, ...m, finalLoss, projectionSpread, steps: meta.step, trainSeconds, evalSeconds: (Date.now() - t1) / 1000 });
        await saveResults();
        ran++;
        hooks.log(`  ${id}: kNN ${pct(m.knn)}, effective rank ${m.rank.toFixed(1)}/${m.dim}, final loss ${finalLoss?.toFixed(4) ?? '–'} (${Math.round(trainSeconds)} s + ${Math.round((Date.now() - t1) / 1000)} s)`);
        await write();
        if (shouldStop()) {
          status = 'stopped';
          break;
        }
      }
      if (status === 'stopped') break;
    }
  } catch (e) {
    if (!(e instanceof StopRequested)) throw e;
    status = 'stopped';
  } finally {
    await Promise.all([sets.bank.close(), sets.test.close()]);
  }
  const { rows, claims, files } = await write();
  return { status, ran, skipped, rows, claims, files };
}

const MARK: Record<Verdict, string> = { held: '✔ held', 'not shown': '– not shown at this scale', contradicted: '✘ contradicted' };

/** ablation.md and the overlaid curves. */
async function writeReport(
  out: OutputDir,
  spec: AblationSpec,
  variants: readonly Variant[],
  rows: readonly Row[],
  claims: readonly Claim[],
  results: readonly RunResult[],
  args: AblateArgs,
  runsDir: string,
  seconds: number,
): Promise<string[]> {
  const b = spec.base;
  const done = results.filter((r) => r.variant !== RANDOM_ID);
  const trainSeconds = done.reduce((s, r) => s + r.trainSeconds + r.evalSeconds, 0);
  const lines = [
    `# byol ablate ${spec.grid}`,
    '',
    `\`${args.command}\``,
    '',
    `Base run: ${b.dataset}${b.limit ? ` (first ${b.limit} images)` : ''}, encoder ${b.encoder}, views \`${b.preset}\`, ${b.epochs} epoch${b.epochs === 1 ? '' : 's'} at batch ${b.batchSize}, ` +
      `${b.optimizer.toUpperCase()} base lr ${b.lr ?? 'default'}${b.larsEta !== null ? ` (η ${b.larsEta})` : ''}, heads ${b.projectorHidden ?? 4096} → ${b.projectorOut ?? 256} / ${b.predictorHidden ?? 4096}, ` +
      `τ_base ${b.tau ?? 0.996} (${b.tauSchedule}). Seeds ${spec.seeds.join(', ')}: each seed fixes the initial weights and the data order, the same for every variant. ` +
      `Evaluation: weighted kNN (k = ${spec.k}, T = ${spec.temperature}) of the online encoder's features, bank = first ${spec.bank} training images, queries = first ${spec.test} test images; ` +
      `effective rank (RankMe) of the query features. Backend ${args.backend.name}${args.backend.precision === 'bf16' ? ' (bf16)' : ''}. ` +
      `Runs finished: ${done.length} of ${variants.length * spec.seeds.length}; their pretraining and evaluation took ${(trainSeconds / 60).toFixed(1)} min (this invocation: ${(seconds / 60).toFixed(1)} min).`,
    '',
    '| variant | kNN top-1 (mean ± std) | seeds | effective rank | feature spread | projection spread | final loss | paper (ImageNet, linear top-1) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.label} | ${pm(r.knn)} | ${r.knn.n} | ${r.rank.mean.toFixed(1)} ± ${r.rank.std.toFixed(1)} of ${r.dim} | ${r.featureStd.mean.toFixed(4)} | ${r.projectionSpread ? r.projectionSpread.mean.toFixed(4) : '–'} | ${r.finalLoss ? r.finalLoss.mean.toFixed(3) : '–'} | ${r.paper ?? '–'} |`,
    ),
    '',
    'Paper figures: Grill et al. 2020, ResNet-50, 300 epochs on ImageNet, linear evaluation — a different scale, beside ours for direction only. ' +
      'Every variant of a seed starts from the same weights and data order, so rows are compared by their per-seed differences: a claim "held" when the mean ' +
      'difference exceeds its standard deviation over seeds (at least 2 seeds); a collapse when kNN is within twice chance or the effective rank is under 2 ' +
      '("partly" when the rank is under half of BYOL\'s and kNN below the random init).',
    '',
    '## Claims',
    '',
    ...(claims.length ? claims.map((c) => `- **${MARK[c.verdict]}** — ${c.claim}: ${c.detail}.`) : ['- (no claim can be judged until its rows are finished)']),
    '',
    '## Curves (mean over seeds)',
    '',
    ...PLOTS.map((p) => `![${p}](${p}.svg)`),
    '',
    '## Every run',
    '',
    '| run | kNN top-1 | effective rank | final loss | steps | pretraining | evaluation |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => `| ${r.id} | ${pct(r.knn)} | ${r.rank.toFixed(1)} | ${r.finalLoss?.toFixed(4) ?? '–'} | ${r.steps} | ${Math.round(r.trainSeconds)} s | ${Math.round(r.evalSeconds)} s |`),
    '',
    `Each run is a \`byol pretrain\` folder under ${RUNS_DIR}/ (evaluate, plot or export it as any run).`,
    '',
  ];
  const files = [await out.write('ablation.md', lines.join('\n'))];
  // Curves: the variants' metrics, mean over the finished seeds, against epochs (so batch sizes line up).
  const curves: Record<(typeof PLOTS)[number], { label: string; points: [number, number][] }[]> = { loss: [], rank: [], collapse: [] };
  for (const v of variants) {
    const seeds = results.filter((r) => r.variant === v.id);
    if (seeds.length === 0) continue;
    const metrics = await Promise.all(seeds.map((r) => readMetrics(join(runsDir, r.id))));
    const record = await readRunRecord(join(runsDir, seeds[0]!.id));
    const spe = record?.stepsPerEpoch ?? 1;
    const pick = (type: 'step' | 'diagnostics', f: (r: MetricsRecord) => number) => meanCurve(metrics.map((ms) => ms.filter((r) => r.type === type).map((r) => [r.step, f(r)] as [number, number])), spe);
    curves.loss.push({ label: v.label, points: pick('step', (r) => (r as Extract<MetricsRecord, { type: 'step' }>).loss) });
    curves.collapse.push({ label: v.label, points: pick('step', (r) => (r as Extract<MetricsRecord, { type: 'step' }>).collapse) });
    curves.rank.push({ label: v.label, points: pick('diagnostics', (r) => (r as Extract<MetricsRecord, { type: 'diagnostics' }>).featureRank) });
  }
  const titles = {
    loss: ['BYOL loss', '2 − 2·cos summed over both views, mean over seeds'],
    rank: ['effective rank of the encoder features', 'RankMe on a training batch (1: collapsed), mean over seeds'],
    collapse: ['spread of the normalized projections', 'std over the batch: 1/√d healthy, 0 collapsed'],
  } as const;
  const png = await svgRasterizer();
  for (const p of PLOTS) {
    const svg = chartSvg({ title: titles[p][0], subtitle: titles[p][1], lines: curves[p], format: formatTick, xLabel: 'epoch' }, 640, 340);
    files.push(await out.write(`${p}.svg`, svg));
    if (png) files.push(await out.write(`${p}.png`, await png(svg)));
  }
  return files;
}
