import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByolError } from '../errors.js';
import { OutputDir } from '../io/output.js';
import { parseJsonLines } from '../io/jsonl.js';
import { isMetricsRecord, type MetricsRecord } from './pretrain.js';

export interface Series {
  readonly title: string;
  /** A second, smaller line under the title (what the metric means). */
  readonly subtitle?: string;
  readonly file: string;
  readonly points: readonly (readonly [number, number])[];
  /** Format of y-axis labels, given the tick spacing. */
  readonly format: (v: number, step: number) => string;
}

/**
 * Reads a run's metrics.jsonl; errors name the file and the bad line. A last line that is not (yet) whole — the
 * run is writing it, or a crash cut it — is left out: reading a live run never fails on it.
 */
export async function readMetrics(runDir: string): Promise<MetricsRecord[]> {
  const path = join(runDir, 'metrics.jsonl');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ByolError('INVALID_OPTION', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'}); is ${runDir} a run folder written by byol pretrain?`, path);
  }
  return parseJsonLines(text, {
    valid: isMetricsRecord,
    damaged: (line) => new ByolError('INVALID_DATA', `${path}: line ${line} is not a metrics record`, path),
  }).map((r) => r.value);
}

/** Round tick spacing (1, 2 or 5 × 10^k) giving about `target` intervals over [lo, hi]. */
export function tickStep(lo: number, hi: number, target = 5): number {
  const raw = (hi - lo) / target;
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/** Ticks at multiples of `step` covering [lo, hi] (the first at or below lo, the last at or above hi). */
export function niceTicks(lo: number, hi: number, step: number): number[] {
  const a = Math.floor(lo / step + 1e-9);
  const b = Math.ceil(hi / step - 1e-9);
  const out: number[] = [];
  // Multiples are computed from integers, so they print exactly (0.3, not 0.30000000000000004).
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  for (let k = a; k <= b; k++) out.push(Number((k * step).toFixed(Math.min(20, decimals))));
  return out;
}

/** A tick label with as many decimals as the spacing needs; tiny or huge spacings in scientific notation. */
export function formatTick(v: number, step: number): string {
  if (v === 0) return '0';
  if (step < 1e-4 || Math.abs(v) >= 1e6) return v.toExponential(6).replace(/\.?0+e/, 'e');
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

/** One line of a chart: its points and, on a chart of several, its legend label. */
export interface ChartLine {
  readonly label?: string;
  readonly points: readonly (readonly [number, number])[];
}

/** Line colours (Tableau 10), in order. */
const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** One line chart as an SVG document: round ticks on both axes, the series as a polyline (dots when few points). */
export function lineChartSvg(s: Series, width = 640, height = 340): string {
  return chartSvg({ ...s, lines: [{ points: s.points }] }, width, height);
}

/**
 * A chart of one or more lines sharing both axes, as an SVG document; several lines get colours and a legend (right).
 * `xLabel` names the x-axis (default "step").
 */
export function chartSvg(
  s: Omit<Series, 'points' | 'file'> & { readonly lines: readonly ChartLine[]; readonly xLabel?: string },
  width = 640,
  height = 340,
): string {
  const legend = s.lines.length > 1 ? Math.min(260, 28 + 7 * Math.max(...s.lines.map((l) => (l.label ?? '').length))) : 0;
  const m = { l: 76, r: 24 + legend, t: s.subtitle ? 52 : 36, b: 44 };
  const pw = width + legend - m.l - m.r;
  const ph = height - m.t - m.b;
  const lines = s.lines.map((l) => l.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])));
  const all = lines.flat();
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - (Math.abs(y0) || 1) * 0.05, y1 + (Math.abs(y1) || 1) * 0.05];
  const xStep = s.xLabel === undefined ? Math.max(1, tickStep(x0, x1, 6)) : tickStep(x0, x1, 6);
  const yStep = tickStep(y0, y1, 5);
  const xTicks = niceTicks(x0, x1, xStep).filter((t) => t >= x0 - 1e-9 * xStep && t <= x1 + 1e-9 * xStep);
  const yTicks = niceTicks(y0, y1, yStep);
  // The y range ends on ticks, so the plot is framed by labelled lines.
  [y0, y1] = [yTicks[0]!, yTicks[yTicks.length - 1]!];
  const X = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const W = width + legend;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${height}" fill="white"/>`,
    `<text x="${m.l}" y="22" font-size="15" font-weight="bold">${esc(s.title)}</text>`,
    ...(s.subtitle ? [`<text x="${m.l}" y="40" font-size="11" fill="#555">${esc(s.subtitle)}</text>`] : []),
    ...yTicks.map((t) => `<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#e5e5e5"/><text x="${m.l - 6}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end" fill="#444">${esc(s.format(t, yStep))}</text>`),
    ...xTicks.map((t) => `<line x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${m.t + ph}" y2="${m.t + ph + 5}" stroke="#444"/><text x="${X(t).toFixed(1)}" y="${m.t + ph + 18}" text-anchor="middle" fill="#444">${esc(formatTick(t, xStep))}</text>`),
    `<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#444"/><line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#444"/>`,
    `<text x="${m.l + pw / 2}" y="${height - 6}" text-anchor="middle" fill="#444">${esc(s.xLabel ?? 'step')}</text>`,
  ];
  if (all.length === 0) parts.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" fill="#888">no data</text>`);
  lines.forEach((pts, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    if (pts.length > 0) {
      parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`);
      if (pts.length <= 50) parts.push(...pts.map((p) => `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="3" fill="${colour}"/>`));
    }
    if (legend > 0) {
      const y = m.t + 8 + 18 * i;
      parts.push(`<line x1="${m.l + pw + 14}" x2="${m.l + pw + 32}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="3"/><text x="${m.l + pw + 38}" y="${y + 4}" fill="#222">${esc(s.lines[i]!.label ?? '')}</text>`);
    }
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** The run's charts. */
export function runSeries(records: readonly MetricsRecord[]): Series[] {
  const steps = records.filter((r): r is Extract<MetricsRecord, { type: 'step' }> => r.type === 'step');
  const knn = records.filter((r): r is Extract<MetricsRecord, { type: 'knn' }> => r.type === 'knn');
  const diag = records.filter((r): r is Extract<MetricsRecord, { type: 'diagnostics' }> => r.type === 'diagnostics');
  const pct = (v: number, step: number) => `${formatTick(100 * v, 100 * step)} %`;
  return [
    { title: 'BYOL loss', subtitle: '2 − 2·cos, summed over the two views (0 to 8)', file: 'loss', points: steps.map((r) => [r.step, r.loss] as const), format: formatTick },
    { title: 'kNN top-1 accuracy', subtitle: 'weighted kNN on the encoder\'s features, k = 200, T = 0.1', file: 'knn', points: knn.map((r) => [r.step, r.top1] as const), format: pct },
    { title: 'collapse metric', subtitle: 'std of the l2-normalized projections: 1/√d healthy, 0 collapsed', file: 'collapse', points: steps.map((r) => [r.step, r.collapse] as const), format: formatTick },
    { title: 'effective rank of the encoder features', subtitle: 'RankMe on a batch (1: collapsed; up to min(batch, features))', file: 'rank', points: diag.map((r) => [r.step, r.featureRank] as const), format: formatTick },
    { title: 'target EMA τ', subtitle: 'τ from τ_base to 1 on a cosine (§3.3)', file: 'tau', points: steps.map((r) => [r.step, r.tau] as const), format: formatTick },
    { title: 'learning rate', subtitle: 'warm-up, then a cosine decay (App. B)', file: 'lr', points: steps.map((r) => [r.step, r.lr] as const), format: formatTick },
  ];
}

const PLOT_FILES = ['loss', 'knn', 'collapse', 'rank', 'tau', 'lr'].flatMap((f) => [`${f}.svg`, `${f}.png`]);

/** A plots folder written before byol marked its folders: nothing in it but plot files. */
async function legacyPlots(entries: readonly string[]): Promise<readonly string[] | null> {
  return entries.every((e) => PLOT_FILES.includes(e)) ? entries : null;
}

/** SVG → PNG with sharp (an optional dependency), or null where it is not installed. */
export async function svgRasterizer(): Promise<((svg: string) => Promise<Buffer>) | null> {
  type Sharp = (input: Buffer) => { png(): { toBuffer(): Promise<Buffer> } };
  const sharp: Sharp | null = await import('sharp').then(
    (m) => m.default as unknown as Sharp,
    () => null,
  );
  return sharp ? (svg) => sharp(Buffer.from(svg)).png().toBuffer() : null;
}

/**
 * Writes RUN's charts to `outDir` as SVG, and as PNG where sharp is installed; returns the files written. `outDir`
 * must be new, empty or byol's plots folder; any other non-empty folder is refused unless `overwrite` (the charts
 * then go beside its files, none of which is replaced).
 */
export async function writePlots(runDir: string, outDir: string, options: { overwrite?: boolean } = {}): Promise<string[]> {
  const series = runSeries(await readMetrics(runDir));
  const png = await svgRasterizer();
  const names = series.flatMap((s) => [`${s.file}.svg`, ...(png ? [`${s.file}.png`] : [])]);
  const out = await OutputDir.claim(outDir, { kind: 'plots', names, ...(options.overwrite ? { overwrite: true } : {}), legacy: legacyPlots });
  const written: string[] = [];
  for (const s of series) {
    const svg = lineChartSvg(s);
    written.push(await out.write(`${s.file}.svg`, svg));
    if (png) written.push(await out.write(`${s.file}.png`, await png(svg)));
  }
  return written;
}
