/**
 * The page's images: the built-in MNIST sample, or files the user drops (decoded by the browser), as one uint8 array of
 * [N, size, size, channels] pixels with optional labels.
 */
import { ByolError } from '../../src/index.js';

export interface PageDataset {
  /** What the page shows: "MNIST sample (2000)", "photos (312 images)". */
  readonly name: string;
  readonly n: number;
  readonly size: number;
  readonly channels: 1 | 3;
  /** n·size·size·channels bytes, row-major NHWC. */
  readonly pixels: Uint8Array;
  /** Class index per image, or null when the images carry no labels. */
  readonly labels: Int32Array | null;
  readonly classNames: readonly string[];
  /** Per image, where it came from (a file's path, or "sample #i"). */
  readonly ids: readonly string[];
}

/** Reads the sample file the build writes (scripts/build-web.mjs): a header, labels, then pixels. */
export function parseSample(bytes: Uint8Array, name = 'MNIST sample'): PageDataset {
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (bytes.length < 24 || magic !== 'BYOLSMP1') throw new ByolError('INVALID_DATA', 'the sample file is not a byol sample (BYOLSMP1)', 'sample');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [n, h, w, c] = [0, 1, 2, 3].map((i) => view.getUint32(8 + 4 * i, true)) as [number, number, number, number];
  if (h !== w || (c !== 1 && c !== 3) || bytes.length !== 24 + n + n * h * w * c) {
    throw new ByolError('INVALID_DATA', `the sample file's header (${n} × ${h} × ${w} × ${c}) does not match its ${bytes.length} bytes`, 'sample');
  }
  const labels = Int32Array.from(bytes.subarray(24, 24 + n));
  return {
    name: `${name} (${n})`,
    n,
    size: h,
    channels: c,
    pixels: bytes.slice(24 + n),
    labels,
    classNames: Array.from({ length: 10 }, (_, i) => String(i)),
    ids: Array.from({ length: n }, (_, i) => `sample #${i}`),
  };
}

const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp|gif|bmp|avif)$/i;

export interface DecodeReport {
  readonly dataset: PageDataset | null;
  /** Files left out, each with why. */
  readonly skipped: { name: string; reason: string }[];
}

/**
 * Decodes dropped files into a dataset of size × size images (centre crop of the largest square, then scaled). The
 * folder a file sits in becomes its label when the files come from two or more folders (a labelled folder tree).
 */
export async function decodeFiles(files: readonly File[], size: number, channels: 1 | 3, onProgress?: (done: number, total: number) => void): Promise<DecodeReport> {
  const skipped: { name: string; reason: string }[] = [];
  const path = (f: File) => (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
  const images = files.filter((f) => {
    const ok = f.type.startsWith('image/') || IMAGE_EXTENSIONS.test(f.name);
    if (!ok) skipped.push({ name: path(f), reason: `not an image (${f.type || 'unknown type'})` });
    return ok;
  });
  const canvas = document.createElement('canvas');
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new ByolError('UNSUPPORTED', 'this browser has no 2-D canvas to decode images with', 'canvas');
  const rows: Uint8Array[] = [];
  const ids: string[] = [];
  for (const [i, f] of images.entries()) {
    try {
      const bitmap = await createImageBitmap(f);
      const side = Math.min(bitmap.width, bitmap.height);
      ctx.clearRect(0, 0, size, size);
      ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, size, size);
      bitmap.close();
      const rgba = ctx.getImageData(0, 0, size, size).data;
      const px = new Uint8Array(size * size * channels);
      for (let p = 0; p < size * size; p++) {
        if (channels === 3) {
          px[p * 3] = rgba[p * 4]!;
          px[p * 3 + 1] = rgba[p * 4 + 1]!;
          px[p * 3 + 2] = rgba[p * 4 + 2]!;
        } else {
          px[p] = Math.round(0.299 * rgba[p * 4]! + 0.587 * rgba[p * 4 + 1]! + 0.114 * rgba[p * 4 + 2]!);
        }
      }
      rows.push(px);
      ids.push(path(f));
    } catch (e) {
      skipped.push({ name: path(f), reason: `cannot be decoded (${(e as Error).message || 'unknown error'})` });
    }
    onProgress?.(i + 1, images.length);
  }
  if (rows.length === 0) return { dataset: null, skipped };
  const folders = ids.map((id) => (id.includes('/') ? id.slice(0, id.lastIndexOf('/')) : ''));
  const classNames = [...new Set(folders)].sort();
  const labelled = classNames.length >= 2;
  const pixels = new Uint8Array(rows.length * size * size * channels);
  rows.forEach((r, i) => pixels.set(r, i * r.length));
  return {
    dataset: {
      name: `${rows.length} dropped image${rows.length === 1 ? '' : 's'}${labelled ? `, ${classNames.length} folders as labels` : ''}`,
      n: rows.length,
      size,
      channels,
      pixels,
      labels: labelled ? Int32Array.from(folders, (f) => classNames.indexOf(f)) : null,
      classNames: labelled ? classNames.map((c) => c.slice(c.lastIndexOf('/') + 1)) : [],
      ids,
    },
    skipped,
  };
}
