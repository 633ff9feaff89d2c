import { readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type sharpModule from 'sharp';
import { ByolError, invalidOption } from '../errors.js';
import type { ImageBatch, ImageSource } from './source.js';

/** File extensions read as images (what sharp decodes). Other files are ignored. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif'] as const;

/** A file left out, with why. */
export interface SkippedFile {
  readonly path: string;
  readonly reason: string;
}

export interface FolderOptions {
  /** Side of the square images returned. Default 256 (views then crop and resize, e.g. to 224). */
  readonly size?: number;
  /**
   * How a picture becomes size × size: `cover` (default) resizes its shorter side to `size` and crops the centre;
   * `fill` stretches it; `contain` fits it whole and pads with black.
   */
  readonly fit?: 'cover' | 'fill' | 'contain';
  /** 3 (RGB, default) or 1 (grey). Alpha is dropped; grey, 16-bit and CMYK inputs are converted. */
  readonly channels?: 1 | 3;
  /**
   * A file that cannot be listed or decoded (or a symlink loop, or a link out of the folder): `fail` (default)
   * throws an error naming it; `skip` leaves it out and reports it to `onSkip` and in `source.skipped`.
   */
  readonly onError?: 'fail' | 'skip';
  readonly onSkip?: (file: SkippedFile) => void;
  /**
   * Which images: all of them (default, null), or the `train` / `test` part for evaluation and held-out kNN. With
   * sub-folders `train` and `val` (or `test`) in the root, the parts are those folders; else the parts of a labelled
   * folder are split by a hash of each file's path (stable when files are added): `holdout` of them in `test`.
   */
  readonly split?: 'train' | 'test' | null;
  /** The share of a labelled folder's images in its `test` part when it has no train/val sub-folders. Default 0.1. */
  readonly holdout?: number;
  /**
   * The image files to use, relative to the part's folder (as `source.files` lists them), instead of listing the
   * folder: a run resumes on exactly the files it started with, whatever was added since.
   */
  readonly files?: readonly string[];
}

export interface FolderSource extends ImageSource {
  /** Files left out so far (policy `skip`), with reasons. */
  readonly skipped: readonly SkippedFile[];
  /** The image files, relative to `root`, in index order. */
  readonly files: readonly string[];
  /** The folder the files are relative to: the given folder, or its `train` / `val` sub-folder for a split. */
  readonly root: string;
}

/** FNV-1a (32 bits) of a string's UTF-16 code units: the stable hash behind the hold-out split. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/** Whether a file (path relative to the folder) is in the held-out part of a hash split with share `holdout`. */
export function isHeldOut(file: string, holdout: number): boolean {
  return fnv1a(file.split(sep).join('/')) % 10_000 < Math.round(holdout * 10_000);
}

/** The train / val (or test) sub-folders of a folder laid out in splits, or null. */
export async function splitFolders(root: string): Promise<{ train: string; test: string } | null> {
  const isDir = (p: string) => stat(p).then((s) => s.isDirectory(), () => false);
  if (!(await isDir(join(root, 'train')))) return null;
  for (const t of ['val', 'test']) if (await isDir(join(root, t))) return { train: join(root, 'train'), test: join(root, t) };
  return null;
}

/**
 * libvips' strictest decoding: a warning fails the file. A truncated file, or a JPEG whose data is garbled ("Corrupt
 * JPEG data"), otherwise decodes to a partly grey or noisy picture without a word.
 */
const FAIL_ON = 'warning' as const;

/**
 * sharp, an optional dependency (a browser or bundler install leaves it out: `npm install byol --omit=optional`), loaded
 * when image folders are first read; its absence is one clear error.
 */
export async function loadSharp(): Promise<typeof sharpModule> {
  try {
    return (await import('sharp')).default;
  } catch (e) {
    throw new ByolError('UNSUPPORTED', `image folders are decoded with sharp, an optional dependency that is not installed here (${(e as Error).message.split('\n')[0]}); install it: npm install sharp`, 'sharp');
  }
}

/**
 * Decodes an image (a path or its bytes) the way byol reads image folders: EXIF-rotated, alpha dropped, 8-bit sRGB
 * (or grey), made square (`fit`) at size × size. Throws sharp's error for a file it cannot decode; `maxPixels`
 * refuses larger inputs before decoding them (decompression bombs).
 */
export async function decodeSquare(
  sharp: typeof sharpModule,
  input: string | Buffer,
  size: number,
  channels: number,
  fit: 'cover' | 'fill' | 'contain',
  maxPixels?: number,
): Promise<Uint8Array> {
  const pipeline = sharp(input, { failOn: FAIL_ON, ...(maxPixels === undefined ? {} : { limitInputPixels: maxPixels }) }).rotate().removeAlpha().toColourspace(channels === 1 ? 'b-w' : 'srgb');
  const { data, info } = await pipeline.resize(size, size, { fit, background: { r: 0, g: 0, b: 0 } }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== channels || info.width !== size || info.height !== size) {
    throw new Error(`decoded to ${info.width}×${info.height}×${info.channels}`);
  }
  return data;
}

function isImage(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((e) => lower.endsWith(e));
}

/**
 * An image folder: `root/<class>/**\/*.jpg…` (labels from the first-level sub-folder names, sorted) or a flat folder
 * of images (no labels). Walks recursively, follows symlinks that stay inside the root, and refuses loops. Images
 * are decoded with sharp (libvips: fast, multi-threaded, maintained), EXIF-rotated, converted to 8-bit sRGB (or
 * grey), and resized to size × size.
 */
export async function imageFolder(folder: string, options: FolderOptions = {}): Promise<FolderSource> {
  const size = options.size ?? 256;
  if (!(Number.isInteger(size) && size >= 1)) throw invalidOption('size', 'a positive integer', size);
  const fit = options.fit ?? 'cover';
  if (!['cover', 'fill', 'contain'].includes(fit)) throw invalidOption('fit', '"cover", "fill" or "contain"', fit);
  const channels = options.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw invalidOption('channels', '1 or 3', channels);
  const policy = options.onError ?? 'fail';
  if (policy !== 'fail' && policy !== 'skip') throw invalidOption('onError', '"fail" or "skip"', policy);
  const split = options.split ?? null;
  if (split !== null && split !== 'train' && split !== 'test') throw invalidOption('split', '"train", "test" or null', split);
  const holdout = options.holdout ?? 0.1;
  if (!(typeof holdout === 'number' && holdout > 0 && holdout < 1)) throw invalidOption('holdout', 'a share in (0, 1)', holdout);
  const skipped: SkippedFile[] = [];
  const problem = (path: string, reason: string) => {
    if (policy === 'fail') throw new ByolError('INVALID_DATA', `${path}: ${reason}`, path);
    const s = { path, reason };
    skipped.push(s);
    options.onSkip?.(s);
  };

  let realRoot: string;
  try {
    realRoot = await realpath(folder);
    if (!(await stat(realRoot)).isDirectory()) throw new Error('not a folder');
  } catch (e) {
    throw new ByolError('INVALID_DATA', `${folder}: cannot open the image folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, folder);
  }
  const parts = split === null ? null : await splitFolders(folder);
  const root = parts ? parts[split!] : folder;
  if (parts) realRoot = await realpath(root);
  const visited = new Set<string>([realRoot]);
  const walk = async (dir: string, found: string[]): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      problem(dir, `cannot list (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(dir, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(path);
        } catch (e) {
          problem(path, `broken or looping symlink (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
          continue;
        }
        if (target !== realRoot && !target.startsWith(realRoot + sep)) {
          problem(path, `symlink points outside the folder (to ${target})`);
          continue;
        }
        const st = await stat(target);
        isDir = st.isDirectory();
        isFile = st.isFile();
        if (isDir && visited.has(target)) {
          problem(path, `symlink loop (back to ${target})`);
          continue;
        }
      }
      if (isDir) {
        visited.add(await realpath(path));
        await walk(path, found);
      } else if (isFile && isImage(entry.name)) found.push(relative(root, path));
    }
  };
  let found: string[] = [];
  if (options.files) {
    found = [...options.files];
    const bad = found.find((f) => typeof f !== 'string' || f === '' || f.startsWith('/') || f.split(/[\\/]/).includes('..'));
    if (bad !== undefined) throw invalidOption('files', 'paths inside the folder', bad);
  } else await walk(root, found);
  if (found.length === 0) throw new ByolError('INVALID_DATA', `${root}: no images found (looked for ${IMAGE_EXTENSIONS.join(', ')})`, root);

  // Labels: every image under a first-level sub-folder → classes; every image directly in the root → unlabelled.
  const top = found.map((f) => (f.includes(sep) ? f.split(sep)[0]! : null));
  const inRoot = top.filter((t) => t === null).length;
  let classes: string[] | null = null;
  let labels: Int32Array | null = null;
  if (inRoot === 0) {
    classes = [...new Set(top as string[])].sort();
    const index = new Map(classes.map((c, i) => [c, i]));
    labels = Int32Array.from(top, (t) => index.get(t!)!);
  } else if (inRoot !== found.length) {
    const loose = found.find((_, i) => top[i] === null)!;
    throw new ByolError(
      'INVALID_DATA',
      `${join(root, loose)}: a labelled folder has images only inside class sub-folders (root/<class>/...), and a flat folder has none in sub-folders; this one mixes both`,
      join(root, loose),
    );
  }

  if (split !== null && !parts) {
    if (!labels) {
      throw new ByolError(
        'INVALID_DATA',
        `${folder}: a ${split} part needs labels (class sub-folders) or train/ and val/ sub-folders; this folder has neither`,
        folder,
      );
    }
    if (!options.files) {
      const keep = found.map((f) => isHeldOut(f, holdout) === (split === 'test'));
      found = found.filter((_, i) => keep[i]);
      labels = Int32Array.from(labels.filter((_, i) => keep[i]));
      if (found.length === 0) throw new ByolError('INVALID_DATA', `${folder}: its ${split} part (${split === 'test' ? holdout : 1 - holdout} of the images, by a hash of their paths) is empty`, folder);
    }
  }

  const sharp = await loadSharp();
  const decode = async (file: string): Promise<Uint8Array | null> => {
    const path = join(root, file);
    try {
      return await decodeSquare(sharp, path, size, channels, fit);
    } catch (e) {
      const gone = !(await stat(path).then(() => true, () => false));
      problem(path, gone ? 'missing (the folder changed since it was listed?)' : `cannot decode (${(e as Error).message.split('\n')[0]})`);
      return null;
    }
  };

  const source: FolderSource = {
    name: `folder:${folder}${split === null ? '' : `@${split}`}`,
    root,
    length: found.length,
    imageShape: [size, size, channels],
    classes,
    skipped,
    files: found,
    async read(indices): Promise<ImageBatch> {
      const decoded = await Promise.all(
        indices.map((i) => {
          if (!(Number.isInteger(i) && i >= 0 && i < found.length)) throw new ByolError('INVALID_INPUT', `${root}: index ${i} is out of range [0, ${found.length})`, 'indices');
          return decode(found[i]!);
        }),
      );
      const kept = indices.filter((_, k) => decoded[k] !== null);
      const bytes = size * size * channels;
      const images = new Uint8Array(kept.length * bytes);
      let k = 0;
      for (const d of decoded) if (d) images.set(d, bytes * k++);
      return {
        images,
        shape: [kept.length, size, size, channels],
        labels: labels ? Int32Array.from(kept, (i) => labels![i]!) : null,
        ids: kept.map((i) => found[i]!),
        indices: kept,
      };
    },
    close: async () => undefined,
  };
  return source;
}
