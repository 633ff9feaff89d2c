import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';

/**
 * Saves a tf.LayersModel as a tfjs "layers-model" folder — `model.json` (topology + weights manifest) and
 * `weights.bin` — the format `tf.loadLayersModel` reads (over http, or `file://` with tfjs-node). The folder
 * appears whole or not at all: it is written beside the destination and renamed into place.
 */
export async function saveLayersModelDir(model: tfl.LayersModel, dir: string): Promise<void> {
  const dest = resolve(dir);
  await mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  await mkdir(tmp);
  try {
    await model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        const data = artifacts.weightData;
        const bytes = data === undefined ? new Uint8Array(0) : data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(await new Blob(data).arrayBuffer());
        const json = {
          format: 'layers-model',
          generatedBy: 'byol',
          convertedBy: null,
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
        };
        await writeFile(join(tmp, 'weights.bin'), bytes);
        await writeFile(join(tmp, 'model.json'), JSON.stringify(json));
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    // Swap in: an existing folder moves aside first and goes only after the new one is in place.
    const old = `${dest}.${randomBytes(6).toString('hex')}.old`;
    let moved = false;
    try {
      await rename(dest, old);
      moved = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    await rename(tmp, dest);
    if (moved) await rm(old, { recursive: true, force: true });
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Loads a folder written by {@link saveLayersModelDir} (or any tfjs layers-model folder). Errors name the file. */
export async function loadLayersModelDir(dir: string): Promise<tfl.LayersModel> {
  const jsonPath = join(dir, 'model.json');
  let json: { modelTopology?: unknown; weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[] };
  try {
    json = JSON.parse(await readFile(jsonPath, 'utf8')) as typeof json;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? 'not valid JSON';
    throw new ByolError('INVALID_DATA', `${jsonPath}: cannot read a tfjs model (${why})`, jsonPath);
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new ByolError('INVALID_DATA', `${jsonPath}: not a tfjs layers model (needs modelTopology and weightsManifest)`, jsonPath);
  }
  const specs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) {
      try {
        parts.push(new Uint8Array(await readFile(join(dir, p))));
      } catch (e) {
        throw new ByolError('INVALID_DATA', `${join(dir, p)}: cannot read model weights (${(e as NodeJS.ErrnoException).code ?? 'error'})`, join(dir, p));
      }
    }
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const weightData = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    weightData.set(p, at);
    at += p.length;
  }
  try {
    return await tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology as object, weightSpecs: specs, weightData: weightData.buffer }));
  } catch (e) {
    throw new ByolError('INVALID_DATA', `${jsonPath}: cannot build the model (${(e as Error).message.split('\n')[0]})`, jsonPath);
  }
}
