/** Plots: round ticks on both axes, labels with the decimals their spacing needs, titles that fit, live metrics. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatTick, lineChartSvg, niceTicks, readMetrics, runSeries, tickStep, type MetricsRecord } from '../src/node.js';

test('tick spacing is 1, 2 or 5 × 10^k and ticks are its multiples, covering the range', () => {
  const table: [number, number, number, number[]][] = [
    // lo, hi, spacing, ticks
    [1, 1500, 200, [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600]],
    [3.8, 3.95, 0.02, [3.8, 3.82, 3.84, 3.86, 3.88, 3.9, 3.92, 3.94, 3.96]],
    [0.996, 1, 0.001, [0.996, 0.997, 0.998, 0.999, 1]],
    [0, 0.00625, 0.001, [0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007]],
    [0.37, 0.46, 0.02, [0.36, 0.38, 0.4, 0.42, 0.44, 0.46]],
  ];
  for (const [lo, hi, step, ticks] of table) {
    assert.equal(tickStep(lo, hi), step, `${lo}..${hi}`);
    assert.deepEqual(niceTicks(lo, hi, step), ticks, `${lo}..${hi}`);
  }
  assert.equal(tickStep(1, 16, 6), 2);
});

test('tick labels: as many decimals as the spacing, no float noise; scientific for tiny spacings', () => {
  const table: [number, number, string][] = [
    [1400, 200, '1400'],
    [3.94, 0.02, '3.94'],
    [0.3, 0.1, '0.3'],
    [0.006, 0.001, '0.006'],
    [0.997, 0.001, '0.997'],
    [0, 0.001, '0'],
    [0.000625, 0.000025, '6.25e-4'],
  ];
  for (const [v, step, text] of table) assert.equal(formatTick(v, step), text, `${v} at ${step}`);
});

test('a chart has round ticks on both axes and its title and subtitle fit its width', () => {
  const steps = Array.from({ length: 1500 }, (_, i) => i + 1);
  const records: MetricsRecord[] = [
    ...steps.map((s) => ({ type: 'step' as const, step: s, epoch: 1, loss: 4 - s / 1000, tau: 0.996 + (0.004 * s) / 1500, lr: 0.2 * Math.sin(s / 500), collapse: 0.0625, imagesPerSecond: 1, elapsed: 1 })),
    ...steps.filter((s) => s % 50 === 0).map((s) => ({ type: 'diagnostics' as const, step: s, epoch: 1, featureStd: 0.05, featureRank: 20 + s / 100, featureDim: 128, batch: 64 })),
  ];
  for (const s of runSeries(records)) {
    const svg = lineChartSvg(s);
    const xLabels = [...svg.matchAll(/<text x="[\d.]+" y="[\d.]+" text-anchor="middle" fill="#444">([^<]+)<\/text>/g)].map((m) => m[1]!).filter((t) => t !== 'step');
    if (s.file !== 'knn') {
      assert.ok(xLabels.length >= 4, `${s.file}: ${xLabels.length} step ticks`);
      for (const t of xLabels) assert.match(t, /^\d+$/);
      for (const t of xLabels) assert.ok(Number(t) % 200 === 0, `${s.file}: step tick ${t}`);
    }
    const yLabels = [...svg.matchAll(/text-anchor="end" fill="#444">([^<]+)<\/text>/g)].map((m) => m[1]!);
    for (const t of yLabels) assert.ok(t.length <= 8, `${s.file}: y label ${t}`);
    // DejaVu Sans is at most ~0.62 em wide a character: 15 px bold titles, 11 px subtitles, from x = 76 of 640.
    assert.ok(s.title.length * 15 * 0.62 < 640 - 76, `${s.file}: title fits`);
    assert.ok((s.subtitle ?? '').length * 11 * 0.62 < 640 - 76, `${s.file}: subtitle fits`);
  }
  const flat = lineChartSvg(runSeries(records).find((s) => s.file === 'collapse')!);
  const flatTicks = [...flat.matchAll(/text-anchor="end" fill="#444">([^<]+)</g)].map((m) => Number(m[1]));
  assert.ok(flatTicks.length >= 3 && flatTicks[0]! < 0.0625 && flatTicks[flatTicks.length - 1]! > 0.0625, `a flat series gets a labelled range around it: ${flatTicks}`);
});

test('readMetrics reads a live run: a last line still being written is left out; a bad line elsewhere is named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-plot-'));
  try {
    const line = (s: number) => JSON.stringify({ type: 'step', step: s, epoch: 1, loss: 1, tau: 1, lr: 1, collapse: 0.1, imagesPerSecond: 1, elapsed: 1 });
    writeFileSync(join(dir, 'metrics.jsonl'), `${line(1)}\n${line(2)}\n{"type":"st`);
    assert.deepEqual((await readMetrics(dir)).map((r) => r.step), [1, 2]);
    writeFileSync(join(dir, 'metrics.jsonl'), `${line(1)}\n{oops\n${line(3)}\n`);
    await assert.rejects(readMetrics(dir), /line 2 is not a metrics record/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
