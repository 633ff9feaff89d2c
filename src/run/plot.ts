import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByolError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { MetricsRecord } from './pretrain.js';

export interface Series {
  readonly title: string;
  readonly file: string;
  readonly points: readonly (readonly [number, number])[];
  /** Format of axis labels. */
  readonly format: (v: number) => string;
}

/** Reads a run's metrics.jsonl; errors name the file and the bad line. */
export async function readMetrics(runDir: string): Promise<MetricsRecord[]> {
  const path = join(runDir, 'metrics.jsonl');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ByolError('INVALID_OPTION', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'}); is ${runDir} a run folder written by byol pretrain?`, path);
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as MetricsRecord;
      } catch {
        throw new ByolError('INVALID_DATA', `${path}: line ${i + 1} is not JSON`, path);
      }
    });
}

const nice = (v: number) => (Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));

/** One line chart as an SVG document: axes with min/max ticks, the series as a polyline (dots when few points). */
export function lineChartSvg(s: Series, width = 640, height = 320): string {
  const m = { l: 70, r: 20, t: 34, b: 40 };
  const pw = width - m.l - m.r;
  const ph = height - m.t - m.b;
  const xs = s.points.map((p) => p[0]);
  const ys = s.points.map((p) => p[1]).filter(Number.isFinite);
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (y0 === y1) [y0, y1] = [y0 - (Math.abs(y0) || 1) * 0.05, y1 + (Math.abs(y1) || 1) * 0.05];
  const X = (x: number) => m.l + (x1 === x0 ? pw / 2 : ((x - x0) / (x1 - x0)) * pw);
  const Y = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${m.l}" y="20" font-size="14" font-weight="bold">${esc(s.title)}</text>`,
    ...ticks.map((t) => `<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#e5e5e5"/><text x="${m.l - 6}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end" fill="#444">${s.format(t)}</text>`),
    `<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#444"/><line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#444"/>`,
    `<text x="${m.l}" y="${height - 12}" fill="#444">${Math.round(x0)}</text><text x="${m.l + pw}" y="${height - 12}" text-anchor="end" fill="#444">${Math.round(x1)}</text>`,
    `<text x="${m.l + pw / 2}" y="${height - 12}" text-anchor="middle" fill="#444">step</text>`,
  ];
  const pts = s.points.filter((p) => Number.isFinite(p[1]));
  if (pts.length === 0) parts.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" fill="#888">no data</text>`);
  else {
    parts.push(`<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`);
    if (pts.length <= 50) parts.push(...pts.map((p) => `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="3" fill="#1f77b4"/>`));
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/** The run's charts. */
export function runSeries(records: readonly MetricsRecord[]): Series[] {
  const steps = records.filter((r): r is Extract<MetricsRecord, { type: 'step' }> => r.type === 'step');
  const knn = records.filter((r): r is Extract<MetricsRecord, { type: 'knn' }> => r.type === 'knn');
  const pct = (v: number) => `${(100 * v).toFixed(1)} %`;
  return [
    { title: 'BYOL loss', file: 'loss', points: steps.map((r) => [r.step, r.loss] as const), format: nice },
    { title: 'kNN top-1 accuracy (k = 200, T = 0.1)', file: 'knn', points: knn.map((r) => [r.step, r.top1] as const), format: pct },
    { title: 'collapse metric (std of normalized projections: 1/√d healthy, 0 collapsed)', file: 'collapse', points: steps.map((r) => [r.step, r.collapse] as const), format: nice },
    { title: 'target EMA τ', file: 'tau', points: steps.map((r) => [r.step, r.tau] as const), format: (v) => v.toFixed(4) },
    { title: 'learning rate', file: 'lr', points: steps.map((r) => [r.step, r.lr] as const), format: nice },
  ];
}

/** Writes RUN's charts to `outDir` as SVG, and as PNG where sharp is installed. Returns the files written. */
export async function writePlots(runDir: string, outDir: string): Promise<string[]> {
  const series = runSeries(await readMetrics(runDir));
  type Sharp = (input: Buffer) => { png(): { toBuffer(): Promise<Buffer> } };
  const sharp: Sharp | null = await import('sharp').then(
    (m) => m.default as unknown as Sharp,
    () => null,
  );
  const written: string[] = [];
  for (const s of series) {
    const svg = lineChartSvg(s);
    const svgPath = join(outDir, `${s.file}.svg`);
    await writeFileAtomic(svgPath, svg);
    written.push(svgPath);
    if (sharp) {
      const pngPath = join(outDir, `${s.file}.png`);
      await writeFileAtomic(pngPath, await sharp(Buffer.from(svg)).png().toBuffer());
      written.push(pngPath);
    }
  }
  return written;
}
