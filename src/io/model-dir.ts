import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';
import { OutputDir } from './output.js';

export interface SaveModelOptions {
  /** Write into a non-empty folder byol did not make, beside its files (none of them is replaced). Default false. */
  readonly overwrite?: boolean;
  /** More files to write into the folder (e.g. `byol.json`), each atomically. */
  readonly extra?: Readonly<Record<string, string | Uint8Array>>;
  /** The flag that allows `overwrite`, for messages. Default `--overwrite`. */
  readonly overwriteFlag?: string;
}

/** An export folder written before byol marked its folders: model.json by byol and nothing but its own files. */
async function legacyExport(entries: readonly string[], dir: string): Promise<readonly string[] | null> {
  if (!entries.every((e) => ['model.json', 'weights.bin', 'byol.json'].includes(e))) return null;
  try {
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { generatedBy?: string };
    return json.generatedBy === 'byol' ? entries : null;
  } catch {
    return null;
  }
}

/**
 * Saves a tf.LayersModel as a tfjs "layers-model" folder — `model.json` (topology + weights manifest) and
 * `weights-HASH.bin` — the format `tf.loadLayersModel` reads (over http, or `file://` with tfjs-node).
 *
 * Nothing byol did not write is ever replaced or removed: the folder may be new, empty, or an earlier byol export
 * (whose files are replaced); any other non-empty folder is refused (OUTPUT_EXISTS) unless `overwrite`, and a file of
 * the same name that byol did not write is refused always. Each file is written atomically, the weights under a name
 * of their own first, then `model.json` that points to them, then the earlier weights go: at every moment
 * `model.json` and the weights it names belong together.
 */
export async function saveLayersModelDir(model: tfl.LayersModel, dir: string, options: SaveModelOptions = {}): Promise<string[]> {
  let saved: { bytes: Uint8Array; json: string } | null = null;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const bytes = data === undefined ? new Uint8Array(0) : data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(await new Blob(data).arrayBuffer());
      const weightsName = `weights-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}.bin`;
      const json = {
        format: 'layers-model',
        generatedBy: 'byol',
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [weightsName], weights: artifacts.weightSpecs ?? [] }],
      };
      saved = { bytes, json: JSON.stringify(json) };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const { bytes, json } = saved as unknown as { bytes: Uint8Array; json: string };
  const weightsName = (JSON.parse(json) as { weightsManifest: { paths: string[] }[] }).weightsManifest[0]!.paths[0]!;
  const extra = options.extra ?? {};
  const out = await OutputDir.claim(dir, {
    kind: 'export',
    names: ['model.json', weightsName, ...Object.keys(extra)],
    ...(options.overwrite ? { overwrite: true } : {}),
    ...(options.overwriteFlag ? { overwriteFlag: options.overwriteFlag } : {}),
    legacy: legacyExport,
  });
  // The weights files of an earlier export here, to remove once model.json points to the new one.
  const earlier: string[] = [];
  if (out.reused) {
    try {
      const old = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest?: { paths?: string[] }[] };
      for (const g of old.weightsManifest ?? []) for (const p of g.paths ?? []) if (p !== weightsName && out.owns(p)) earlier.push(p);
    } catch {
      // no readable earlier model.json: nothing to clean
    }
  }
  const written = [await out.write(weightsName, bytes), await out.write('model.json', json)];
  for (const [name, data] of Object.entries(extra)) written.push(await out.write(name, data));
  for (const p of earlier) await out.remove(p);
  return written;
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
