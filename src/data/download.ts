import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { basename, dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { ByolError } from '../errors.js';
import { temporaryName, trackTemporary } from '../io/atomic.js';
import { ensureDir, isFsError, writeFailed } from '../io/fs.js';
import { OutputDir } from '../io/output.js';

export interface DownloadOptions {
  /** Expected digest, hex. */
  readonly checksum: string;
  readonly algorithm?: 'md5' | 'sha256';
  /** Called with bytes received so far and the total when known. */
  readonly onProgress?: (received: number, total: number | null) => void;
  /** Give up on a connection silent this long. Default 60 s. */
  readonly timeoutMs?: number;
}

async function digestOf(path: string, algorithm: string): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * Downloads `url` to `dest`, atomically and resumably: bytes go to `dest.part` (an interrupted transfer keeps what
 * arrived, and the next call asks only for the rest with an HTTP Range request); when complete, the checksum is
 * checked and only then is the file renamed to `dest`. A wrong checksum deletes the partial file and throws
 * CHECKSUM_MISMATCH. An existing `dest` with the right checksum is kept without any request.
 */
export async function download(url: string, dest: string, options: DownloadOptions): Promise<string> {
  const algorithm = options.algorithm ?? 'md5';
  const expected = options.checksum.toLowerCase();
  if (await sizeOf(dest)) {
    if ((await digestOf(dest, algorithm)) === expected) return dest;
    throw new ByolError('CHECKSUM_MISMATCH', `${dest}: exists but its ${algorithm} is not ${expected}; delete it to download again`, dest);
  }
  await ensureDir(dirname(dest));
  const part = `${dest}.part`;
  const have = await sizeOf(part);
  await fetchInto(url, part, have, options, 0);
  const got = await digestOf(part, algorithm);
  if (got !== expected) {
    await rm(part, { force: true });
    throw new ByolError('CHECKSUM_MISMATCH', `${basename(dest)} from ${url}: ${algorithm} ${got}, expected ${expected}; the partial file was removed`, dest);
  }
  await rename(part, dest);
  return dest;
}

function fetchInto(url: string, part: string, offset: number, options: DownloadOptions, redirects: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new ByolError('DOWNLOAD_FAILED', `${url}: ${why}`, url));
    const client = url.startsWith('https:') ? https : url.startsWith('http:') ? http : null;
    if (!client) return fail('only http and https addresses are supported');
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const req = client.get(url, { headers, timeout: options.timeoutMs ?? 60_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects >= 5) return fail('too many redirects');
        fetchInto(new URL(res.headers.location, url).toString(), part, offset, options, redirects + 1).then(resolve, reject);
        return;
      }
      if (status === 416 && offset > 0) {
        // The part file already holds the whole resource.
        res.resume();
        return resolve();
      }
      if (status !== 200 && status !== 206) {
        res.resume();
        return fail(`HTTP ${status}`);
      }
      // A server that ignores Range answers 200 with the whole file: start over.
      const start = status === 206 ? offset : 0;
      const length = Number(res.headers['content-length']);
      const total = Number.isFinite(length) ? start + length : null;
      void (async () => {
        const file = await open(part, start === 0 ? 'w' : 'a');
        let received = start;
        try {
          for await (const chunk of res) {
            await file.write(chunk as Buffer);
            received += (chunk as Buffer).length;
            options.onProgress?.(received, total);
          }
        } catch (e) {
          await file.close();
          return fail(`connection lost after ${received} bytes (${(e as Error).message}); call again to resume`);
        }
        await file.close();
        if (!res.complete || (total !== null && received !== total)) {
          return fail(`connection lost after ${received} of ${total ?? '?'} bytes; call again to resume`);
        }
        resolve();
      })();
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => fail((e as Error).message));
  });
}

/** One file of a published dataset: mirrors tried in order, and its published MD5. */
export interface DatasetFile {
  readonly name: string;
  readonly urls: readonly string[];
  readonly md5: string;
}

const MNIST_MIRRORS = ['https://ossci-datasets.s3.amazonaws.com/mnist/', 'http://yann.lecun.com/exdb/mnist/'];
const FASHION = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/';
const idxFiles = (mirrors: readonly string[], md5s: readonly string[]): DatasetFile[] =>
  ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'].map((name, i) => ({
    name,
    urls: mirrors.map((m) => m + name),
    md5: md5s[i]!,
  }));

/** The official addresses and published MD5s (as torchvision lists them). */
export const DATASET_FILES: Readonly<Record<'cifar10' | 'cifar100' | 'mnist' | 'fashion-mnist' | 'stl10', readonly DatasetFile[]>> = {
  cifar10: [{ name: 'cifar-10-binary.tar.gz', urls: ['https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'], md5: 'c32a1d4ab5d03f1284b67883e8d87530' }],
  cifar100: [{ name: 'cifar-100-binary.tar.gz', urls: ['https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'], md5: '03b5dce01913d631647c71ecec9e9cb8' }],
  mnist: idxFiles(MNIST_MIRRORS, ['f68b3c2dcbeaaa9fbdd348bbdeb94873', 'd53e105ee54ea40749a09fcbcd1e9432', '9fb629c4189551a2d022fa330f9573f3', 'ec29112dd5afa0611ce80d1b7f02629c']),
  'fashion-mnist': idxFiles([FASHION], ['8d4fb7e6c68d591d4c3dfef9ec88bf0d', '25c81989df183df01b3e8a0aad5dffbe', 'bef4ecab320f06d8554ea6380940ec79', 'bb300cfdad3c16e7a12a480ee83cd310']),
  stl10: [{ name: 'stl10_binary.tar.gz', urls: ['http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz'], md5: '91f7769df0f17e558f3565bffb0c7dfb' }],
};

/**
 * Downloads every file of a dataset into `cacheDir/<dataset>/` (mirrors in order), extracting .tar.gz archives
 * there. Returns the folder. Already complete files are not fetched again.
 */
export async function downloadDataset(
  dataset: keyof typeof DATASET_FILES,
  cacheDir: string,
  options: { files?: readonly DatasetFile[]; onProgress?: DownloadOptions['onProgress']; overwrite?: boolean } = {},
): Promise<string> {
  const dir = join(cacheDir, dataset);
  const files = options.files ?? DATASET_FILES[dataset];
  // The folder is byol's (new, empty, or an earlier download): nothing else in it is ever replaced.
  await OutputDir.claim(dir, { kind: 'download', names: files.flatMap((f) => [f.name, `${f.name}.part`]), ...(options.overwrite ? { overwrite: true } : {}), legacy: legacyDownload(files) });
  for (const file of files) {
    const dest = join(dir, file.name);
    let last: unknown = null;
    let done = false;
    for (const url of file.urls) {
      try {
        await download(url, dest, { checksum: file.md5, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
        done = true;
        break;
      } catch (e) {
        last = e;
        if (e instanceof ByolError && e.code === 'CHECKSUM_MISMATCH') throw e;
      }
    }
    if (!done) throw last;
    if (file.name.endsWith('.tar.gz')) await extractTarGz(dest, dir);
  }
  return dir;
}

/** A download folder from before byol marked its folders: it holds one of the dataset's archives (or its part). */
function legacyDownload(files: readonly DatasetFile[]) {
  return async (entries: readonly string[]): Promise<readonly string[] | null> =>
    files.some((f) => entries.includes(f.name) || entries.includes(`${f.name}.part`)) ? entries : null;
}

/**
 * Extracts the regular files of a .tar.gz archive into `dir`, flattening their folders (the binary datasets keep
 * their files one folder deep). Names with '..' or absolute paths are refused. `dir` is claimed as a byol download
 * folder (new, empty or byol's; else refused unless `overwrite`, see OutputDir): a file byol did not write is never
 * replaced. Each file is written atomically; files byol extracted before with the same size are kept.
 */
export async function extractTarGz(archive: string, dir: string, options: { overwrite?: boolean } = {}): Promise<string[]> {
  const out = await OutputDir.claim(dir, { kind: 'download', names: [], ...(options.overwrite ? { overwrite: true } : {}) });
  // Streamed: STL-10's archive unpacks to 2.6 GB, over what one Buffer (and readFile) can hold.
  const file = createReadStream(archive);
  const reader = new TarReader(file.pipe(createGunzip()), archive);
  try {
    return await extractEntries(reader, archive, dir, out);
  } finally {
    file.destroy();
  }
}

async function extractEntries(reader: TarReader, archive: string, dir: string, out: OutputDir): Promise<string[]> {
  const written: string[] = [];
  for (;;) {
    const entry = await reader.next();
    if (!entry) break;
    const { name, size, type } = entry;
    if (type !== '0' && type !== '\0') {
      await reader.skip(size);
      continue;
    }
    if (name.split('/').includes('..') || name.startsWith('/')) {
      throw new ByolError('INVALID_DATA', `${archive}: refusing the unsafe entry name ${JSON.stringify(name)}`, archive);
    }
    const file = basename(name);
    const dest = join(dir, file);
    if (out.owns(file) && (await sizeOf(dest)) === size) await reader.skip(size);
    else {
      await out.adopt(file);
      const tmp = temporaryName(dest);
      const release = trackTemporary(tmp);
      try {
        const handle = await open(tmp, 'wx');
        try {
          await reader.copy(size, (chunk) => handle.write(chunk).then(() => undefined));
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(tmp, dest);
      } catch (e) {
        await rm(tmp, { force: true });
        throw isFsError(e) ? writeFailed(dest, e, 'extract', 'nothing was replaced') : e;
      } finally {
        release();
      }
    }
    written.push(dest);
  }
  return written;
}

/** A tar archive read from a stream, entry by entry: headers, then each entry's bytes copied or skipped. */
class TarReader {
  private buffered: Buffer[] = [];
  private length = 0;
  private readonly chunks: AsyncIterator<Buffer>;
  private ended = false;

  constructor(stream: NodeJS.ReadableStream, private readonly archive: string) {
    this.chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Reads until at least `n` bytes are buffered (or the stream ends); false when it ended short. */
  private async fill(n: number): Promise<boolean> {
    while (this.length < n && !this.ended) {
      let r: IteratorResult<Buffer>;
      try {
        r = await this.chunks.next();
      } catch (e) {
        throw new ByolError('INVALID_DATA', `${this.archive}: not a readable gzip archive (${(e as Error).message})`, this.archive);
      }
      if (r.done) this.ended = true;
      else {
        this.buffered.push(r.value);
        this.length += r.value.length;
      }
    }
    return this.length >= n;
  }

  /** Takes up to `n` buffered bytes (at least one, if any is buffered). */
  private take(n: number): Buffer {
    const first = this.buffered[0]!;
    const part = first.length <= n ? first : first.subarray(0, n);
    if (part === first) this.buffered.shift();
    else this.buffered[0] = first.subarray(n);
    this.length -= part.length;
    return part;
  }

  /** The next entry's header, or null at the end of the archive. */
  async next(): Promise<{ name: string; size: number; type: string } | null> {
    if (!(await this.fill(512))) {
      if (this.length === 0) return null;
      throw new ByolError('INVALID_DATA', `${this.archive}: truncated tar header`, this.archive);
    }
    const parts: Buffer[] = [];
    for (let need = 512; need > 0; ) {
      const p = this.take(need);
      parts.push(p);
      need -= p.length;
    }
    const header = Buffer.concat(parts);
    if (header.every((b) => b === 0)) return null;
    const field = (from: number, len: number) => header.subarray(from, from + len).toString('utf8').replace(/\0.*$/s, '');
    const prefix = field(345, 155);
    const name = (prefix ? `${prefix}/` : '') + field(0, 100);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) throw new ByolError('INVALID_DATA', `${this.archive}: bad size in the tar entry ${JSON.stringify(name)}`, this.archive);
    return { name, size, type: String.fromCharCode(header[156]!) };
  }

  /** Passes the entry's `size` bytes to `sink`, then skips its padding to the next 512-byte block. */
  async copy(size: number, sink: (chunk: Buffer) => Promise<void>): Promise<void> {
    for (let left = size; left > 0; ) {
      if (!(await this.fill(1))) throw new ByolError('INVALID_DATA', `${this.archive}: truncated tar entry (${left} of ${size} bytes missing)`, this.archive);
      const chunk = this.take(left);
      left -= chunk.length;
      await sink(chunk);
    }
    const pad = (512 - (size % 512)) % 512;
    for (let left = pad; left > 0; ) {
      if (!(await this.fill(1))) return;
      left -= this.take(left).length;
    }
  }

  skip(size: number): Promise<void> {
    return this.copy(size, async () => undefined);
  }
}
