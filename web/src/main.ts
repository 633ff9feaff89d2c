/**
 * The page: pick images, train BYOL on the best backend the browser has, watch its curves, map what it learned, and
 * take the encoder away. Every action's failure shows in the page (#errors), not only in the console.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { inputDescription } from '../../src/index.js';
import { cosineNeighbours, pca } from '../../src/eval/map.js';
import { chooseBackend } from './backends.js';
import { decodeFiles, parseSample, type PageDataset } from './data.js';
import { PALETTE, linePlot, paintImage, scatter, type ScatterMap } from './plots.js';
import { referenceStep } from './reference.js';
import { clearState, loadState, saveState } from './store.js';
import { DEFAULT_PAGE_RUN, PageRun, pageImageSize, viewsFor, type PageEncoder, type PageRunConfig, type PageRunSnapshot } from './trainer.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
/** Steps between saves to IndexedDB while training (and on every pause and at the end). */
const SAVE_EVERY = Number(params.get('saveEvery') ?? 25);

interface PageState {
  backend: string;
  dataset: PageDataset | null;
  /** 'sample' or 'dropped': what a reload must bring back. */
  datasetKind: 'sample' | 'dropped' | null;
  run: PageRun | null;
  /** The training loop is running (until its last save is done). */
  training: boolean;
  /** Pause was asked for: the loop stops after the current step. */
  stopRequested: boolean;
  /** A loaded encoder to start the next run from. */
  loaded: { model: tfl.LayersModel; artifacts: NonNullable<PageRunSnapshot['initialEncoder']>; name: string } | null;
  map: { coordinates: Float32Array; features: Float32Array; dim: number; picker: ScatterMap; knn: number | null; randomKnn: number | null; explained: number[] } | null;
  neighbours: number[];
  restored: boolean;
  savedAt: number;
  errors: string[];
}

const state: PageState = { backend: '', dataset: null, datasetKind: null, run: null, training: false, stopRequested: false, loaded: null, map: null, neighbours: [], restored: false, savedAt: -1, errors: [] };

function showError(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  state.errors.push(message);
  const box = $('errors');
  box.hidden = false;
  box.textContent = state.errors.slice(-5).join('\n');
}
window.addEventListener('error', (ev) => showError(ev.error ?? ev.message));
window.addEventListener('unhandledrejection', (ev) => showError(ev.reason));

/** Runs a UI action, showing its failure in the page. */
const act = (f: () => Promise<void> | void) => async () => {
  try {
    await f();
  } catch (e) {
    showError(e);
  } finally {
    refresh();
  }
};

function readConfig(): PageRunConfig {
  const num = (id: string, min: number, integer = true) => {
    const el = $<HTMLInputElement>(id);
    const v = Number(el.value);
    if (!(Number.isFinite(v) && v >= min && (!integer || Number.isInteger(v)))) throw new Error(`${id} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}; got "${el.value}"`);
    return v;
  };
  return { ...DEFAULT_PAGE_RUN, encoder: $<HTMLSelectElement>('encoder').value as PageEncoder, batch: num('batch', 2), steps: num('steps', 1), lr: num('lr', 0, false), seed: num('seed', 0) };
}

function refresh(): void {
  const { run, dataset, training } = state;
  $<HTMLButtonElement>('train').disabled = !dataset || training || (run?.done ?? false);
  $<HTMLButtonElement>('pause').disabled = !training;
  $<HTMLButtonElement>('reset').disabled = !run || training;
  $<HTMLButtonElement>('map').disabled = !run || training;
  $<HTMLButtonElement>('download').disabled = !run;
  $('train').textContent = run && run.step > 0 && !run.done ? 'Resume' : 'Train';
  const m = run?.metrics.at(-1);
  $('status').textContent = !run
    ? state.loaded
      ? `No run. The next one starts from ${state.loaded.name}.`
      : 'No run.'
    : `${training ? 'training' : run.done ? 'done' : 'paused'} · step ${run.step}/${run.config.steps}` +
      (m ? ` · loss ${m.loss.toFixed(4)} · τ ${m.tau.toFixed(4)} · lr ${m.learningRate.toPrecision(3)} · collapse ${m.collapse.toFixed(4)} · ${m.imagesPerSecond.toFixed(1)} img/s` : '') +
      (state.restored ? ' · restored from this browser' : '');
  if (!state.backend) return; // tf.memory() needs an initialized backend
  const mem = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
  $('memory').textContent = `backend ${state.backend}\ntensors ${mem.numTensors}\nbytes ${mem.numBytes}${mem.numBytesInGPU !== undefined ? `\nGPU bytes ${mem.numBytesInGPU}` : ''}\nsaved at step ${state.savedAt}`;
}

function drawPlots(): void {
  const ms = state.run?.metrics ?? [];
  const steps = ms.map((m) => m.step);
  linePlot($<HTMLCanvasElement>('plot-loss'), steps, ms.map((m) => m.loss), 'loss (2 − 2·cos, both views)');
  linePlot($<HTMLCanvasElement>('plot-collapse'), steps, ms.map((m) => m.collapse), 'collapse: std of normalized projections', '#d62728');
  linePlot($<HTMLCanvasElement>('plot-tau'), steps, ms.map((m) => m.tau), 'τ (target EMA)', '#2ca02c');
  linePlot($<HTMLCanvasElement>('plot-lr'), steps, ms.map((m) => m.learningRate), 'learning rate', '#9467bd');
}

/** Forgets the map of an earlier run (a new run, other images). */
function clearMap(): void {
  state.map = null;
  state.neighbours = [];
  const c = $<HTMLCanvasElement>('map-canvas');
  c.getContext('2d')?.clearRect(0, 0, c.width, c.height);
  $('legend').replaceChildren();
  $('knn').textContent = '';
  $('neighbours').replaceChildren(Object.assign(document.createElement('p'), { textContent: 'Click a point to see its nearest neighbours.' }));
}

function setDataset(d: PageDataset, kind: 'sample' | 'dropped'): void {
  state.dataset = d;
  state.datasetKind = kind;
  clearMap();
  const labels = d.labels ? `, ${d.classNames.length} classes` : ', no labels';
  $('data-info').textContent = `${d.name}: ${d.size}×${d.size}, ${d.channels === 1 ? 'grey' : 'colour'}${labels}.`;
  const thumbs = $('thumbs');
  thumbs.replaceChildren();
  for (let i = 0; i < Math.min(d.n, 24); i++) {
    const c = document.createElement('canvas');
    paintImage(c, d.pixels, i, d.size, d.channels);
    c.title = d.ids[i]!;
    thumbs.append(c);
  }
}

async function loadSample(): Promise<PageDataset> {
  const res = await fetch('mnist-sample.bin');
  if (!res.ok) throw new Error(`the built-in sample (mnist-sample.bin) did not load: HTTP ${res.status}`);
  return parseSample(new Uint8Array(await res.arrayBuffer()));
}

async function newDataset(d: PageDataset, kind: 'sample' | 'dropped'): Promise<void> {
  if (state.training) throw new Error('pause the run before choosing other images');
  state.run?.dispose();
  state.run = null;
  setDataset(d, kind);
  await clearState();
  await saveState('dataset', kind === 'sample' ? { kind } : { kind, dataset: d });
  drawPlots();
}

async function useFiles(files: File[]): Promise<void> {
  if (files.length === 0) return;
  const channels = $<HTMLInputElement>('grey').checked ? 1 : 3;
  const info = $('data-info');
  const report = await decodeFiles(files, pageImageSize(channels), channels, (done, total) => (info.textContent = `decoding ${done}/${total}…`));
  if (report.skipped.length) showError(`left out ${report.skipped.length} file(s): ${report.skipped.slice(0, 5).map((s) => `${s.name}: ${s.reason}`).join('; ')}${report.skipped.length > 5 ? '; …' : ''}`);
  if (!report.dataset) {
    info.textContent = 'No images could be read.';
    return;
  }
  if (report.dataset.n < 2) throw new Error('BYOL needs at least 2 images (batch norm)');
  await newDataset(report.dataset, 'dropped');
}

async function save(): Promise<void> {
  if (!state.run) return;
  await saveState('run', await state.run.snapshot());
  state.savedAt = state.run.step;
}

async function train(): Promise<void> {
  const d = state.dataset;
  if (!d || state.training) return;
  if (!state.run) {
    const config = readConfig();
    if (config.batch > d.n) throw new Error(`batch ${config.batch} is more than the ${d.n} images`);
    viewsFor(d);
    state.run = new PageRun(d, config, state.loaded ?? undefined);
    clearMap();
    state.loaded = null; // the learner owns the loaded model now
    state.restored = false;
  }
  const run = state.run;
  state.training = true;
  state.stopRequested = false;
  refresh();
  try {
    let lastDraw = 0;
    while (!state.stopRequested && !run.done) {
      const m = await run.trainStep();
      if (!Number.isFinite(m.loss)) throw new Error(`the loss became ${m.loss} at step ${m.step}: start a new run with a lower learning rate`);
      if (run.step % SAVE_EVERY === 0) await save();
      if (performance.now() - lastDraw > 250 || run.done) {
        drawPlots();
        refresh();
        lastDraw = performance.now();
      }
      await tf.nextFrame(); // yield to the page: clicks, painting
    }
  } finally {
    try {
      await save();
    } finally {
      state.training = false;
      drawPlots();
    }
  }
}

async function computeMap(): Promise<void> {
  const run = state.run;
  if (!run) return;
  $('knn').textContent = 'embedding…';
  const features = await run.embed();
  const n = run.dataset.n;
  const dim = features.length / n;
  const p = pca(features, n, dim, 2);
  const knn = await run.knn(features);
  let randomKnn: number | null = null;
  if (knn !== null) randomKnn = await run.knn(await run.initialEmbeddings());
  const picker = scatter($<HTMLCanvasElement>('map-canvas'), p.coordinates, run.dataset.labels);
  const legend = $('legend');
  legend.replaceChildren();
  run.dataset.classNames.forEach((name, k) => {
    const item = document.createElement('span');
    item.innerHTML = `<i style="background:${PALETTE[k % PALETTE.length]}"></i>`;
    item.append(name);
    legend.append(item);
  });
  state.map = { coordinates: p.coordinates, features, dim, picker, knn, randomKnn, explained: p.explained };
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  $('knn').textContent =
    `PCA of ${n} embeddings (${pct(p.explained[0]! + p.explained[1]!)} of the variance)` +
    (knn !== null ? ` · kNN top-1 (k=20, last 20 % vs first 80 %): BYOL step ${run.step} ${pct(knn)}, the same encoder at step 0 ${pct(randomKnn!)}` : ' · no labels, no kNN');
}

function showNeighbours(i: number): void {
  const { map, run } = state;
  if (!map || !run) return;
  const d = run.dataset;
  const near = cosineNeighbours(map.features, d.n, map.dim, i, 8);
  state.neighbours = [i, ...near.map((x) => x.index)];
  scatter($<HTMLCanvasElement>('map-canvas'), map.coordinates, d.labels, state.neighbours);
  const box = $('neighbours');
  box.replaceChildren();
  const head = document.createElement('p');
  head.textContent = `${d.ids[i]}${d.labels ? ` (${d.classNames[d.labels[i]!]})` : ''} and its 8 nearest neighbours (cosine):`;
  box.append(head);
  const q = document.createElement('canvas');
  q.className = 'query';
  paintImage(q, d.pixels, i, d.size, d.channels);
  box.append(q);
  for (const { index, similarity } of near) {
    const c = document.createElement('canvas');
    paintImage(c, d.pixels, index, d.size, d.channels);
    c.title = `${d.ids[index]}${d.labels ? ` (${d.classNames[d.labels[index]!]})` : ''}: ${similarity.toFixed(3)}`;
    c.dataset['index'] = String(index);
    box.append(c);
  }
}

/** The online encoder as tfjs model files plus byol.json: a folder `byol embed` and `byol eval` take. */
async function download(): Promise<void> {
  const run = state.run;
  if (!run) return;
  const views = run.views.config;
  await (run.learner.encoder as tfl.LayersModel).save('downloads://model');
  const info = {
    source: 'byol web page',
    step: run.step,
    config: run.config,
    dataset: run.dataset.name,
    input: inputDescription(views),
  };
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([`${JSON.stringify(info, null, 2)}\n`], { type: 'application/json' }));
  a.download = 'byol.json';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** Loads model.json + its weights files (from `byol export`, `byol import` or this page) to start the next run from. */
async function loadEncoder(files: File[]): Promise<void> {
  const json = files.find((f) => f.name.endsWith('.json') && f.name !== 'byol.json');
  if (!json) throw new Error('choose the model.json of a tfjs model folder together with its .bin weights file(s)');
  const weights = files.filter((f) => f.name.endsWith('.bin'));
  let artifacts: tf.io.ModelArtifacts | null = null;
  const loaded = await tfl.loadLayersModel(tf.io.browserFiles([json, ...weights]));
  // Keep the exact starting weights (for the snapshot and the kNN baseline) as the model serializes them.
  await loaded.save(tf.io.withSaveHandler(async (a) => ((artifacts = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } })));
  const a = artifacts as tf.io.ModelArtifacts | null;
  if (!a?.modelTopology || !a.weightSpecs || !a.weightData) throw new Error(`${json.name}: the model did not serialize`);
  const weightData = a.weightData instanceof ArrayBuffer ? a.weightData : tf.io.concatenateArrayBuffers(a.weightData);
  state.loaded?.model.dispose();
  state.loaded = { model: loaded, artifacts: { topology: a.modelTopology as object, weightSpecs: a.weightSpecs, weightData }, name: json.name };
  if (state.run && !state.training) {
    state.run.dispose();
    state.run = null;
    clearMap();
  }
}

async function restore(): Promise<void> {
  const saved = await loadState<{ kind: 'sample' | 'dropped'; dataset?: PageDataset }>('dataset');
  if (!saved) return;
  const d = saved.kind === 'sample' ? await loadSample() : saved.dataset;
  if (!d) return;
  setDataset(d, saved.kind);
  const snap = await loadState<PageRunSnapshot>('run');
  if (!snap) return;
  state.run = await PageRun.restore(d, snap);
  state.restored = true;
  state.savedAt = state.run.step;
  drawPlots();
}

function wire(): void {
  $('use-sample').addEventListener('click', act(async () => newDataset(await loadSample(), 'sample')));
  for (const id of ['pick-folder', 'pick-files']) {
    const input = $<HTMLInputElement>(id);
    input.addEventListener('change', act(async () => useFiles([...(input.files ?? [])])));
  }
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void act(async () => useFiles(await droppedFiles(e.dataTransfer)))();
  });
  $('train').addEventListener('click', act(train));
  $('pause').addEventListener('click', () => (state.stopRequested = true));
  $('reset').addEventListener('click', act(async () => {
    state.run?.dispose();
    state.run = null;
    clearMap();
    await saveState('run', null);
    drawPlots();
  }));
  $('map').addEventListener('click', act(computeMap));
  $('download').addEventListener('click', act(download));
  const enc = $<HTMLInputElement>('load-encoder');
  enc.addEventListener('change', act(async () => loadEncoder([...(enc.files ?? [])])));
  $('map-canvas').addEventListener('click', (e) => {
    const i = state.map?.picker.pick(e.offsetX, e.offsetY);
    if (i !== undefined && i !== null) showNeighbours(i);
  });
  setInterval(refresh, 1000);
}

/** Files of a drop, walking dropped folders (their paths kept, so sub-folders become labels). */
async function droppedFiles(dt: DataTransfer | null): Promise<File[]> {
  if (!dt) return [];
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  if (entries.length === 0) return [...dt.files];
  const out: File[] = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const f = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
      Object.defineProperty(f, 'webkitRelativePath', { value: prefix + f.name });
      out.push(f);
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
        if (batch.length === 0) break;
        for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return out;
}

/** What the browser test reads and drives (the same actions as the buttons). */
const testApi = {
  state: () => ({
    backend: state.backend,
    dataset: state.dataset && { name: state.dataset.name, n: state.dataset.n },
    step: state.run?.step ?? 0,
    training: state.training,
    restored: state.restored,
    savedAt: state.savedAt,
    metrics: state.run?.metrics ?? [],
    map: state.map && { knn: state.map.knn, randomKnn: state.map.randomKnn, explained: state.map.explained, n: state.map.coordinates.length / 2 },
    neighbours: state.neighbours,
    errors: state.errors,
    memory: state.backend ? tf.memory().numTensors : null,
  }),
  pointPosition: (i: number) => state.map?.picker.position(i) ?? null,
  embeddings: async () => (state.run ? Array.from(await state.run.embed()) : null),
  /** The features of the run's step-0 encoder (the kNN baseline). */
  initialEmbeddings: async () => (state.run ? Array.from(await state.run.initialEmbeddings()) : null),
  referenceStep,
};
(window as unknown as { byolPage: typeof testApi & { ready: Promise<void> } }).byolPage = {
  ...testApi,
  ready: (async () => {
    try {
      wire();
      let choice;
      try {
        choice = await chooseBackend(params.get('backend'));
      } catch (e) {
        if (!params.get('backend')) throw e;
        showError(e);
        choice = await chooseBackend(null); // what was asked for does not work here: the best that does
      }
      state.backend = choice.name;
      $('backend').textContent = `backend: ${choice.name}${choice.skipped.length ? ` (not ${choice.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})` : ''}`;
      await restore();
    } catch (e) {
      $('backend').textContent = 'backend: none';
      showError(e);
    } finally {
      refresh();
    }
  })(),
};
