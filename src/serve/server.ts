/**
 * `byol serve`: an embedding and similarity-search HTTP service (fastify), Node only.
 *
 *   GET    /health              {status, items, dim, input, queue}
 *   POST   /embed               image bytes (JPEG/PNG/WebP/…), or JSON {"image": base64} | {"images": [base64…]}
 *                               → {"embedding": [...]} | {"embeddings": [[...]…]}
 *   POST   /search?k=K          image bytes, or JSON {"image": base64} | {"id": "…"} | {"embedding": [...]}
 *                               → {"results": [{"id", "score", "label"}]}
 *   POST   /items               JSON {"items": [{"id", "label"?, "image": base64}]} (or image bytes with ?id=&label=)
 *   DELETE /items/:id
 *   GET    /openapi.json
 *
 * Safe by default: the CLI binds 127.0.0.1; an optional bearer token; limits on body size, pixels per image (checked
 * before decoding: decompression bombs), images per request, k, queue length (503 when full) and time per request;
 * ids are strings that never touch the file system; every bad request is a 4xx JSON {"error", "code"} and the
 * server stays up. Concurrent requests share work: images that arrive while a forward pass runs go through the next
 * one together (up to `maxBatch`; `batchWindowMs` can also hold an image that finds the encoder idle), and searches
 * that arrive together are one matrix product over the index.
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import * as tf from '@tensorflow/tfjs-core';
import { decodeSquare, loadSharp } from '../data/folder.js';
import { ByolError } from '../errors.js';
import { encoderInput, type EvalInput } from '../run/features.js';
import type { IndexStore } from './store.js';
import { checkId, topK, unitVector, type Hit, type VectorIndex } from './vector-index.js';

export { topK };

export interface ServeOptions {
  /** The encoder: normalized images [N, size, size, channels] → features [N, D] (inference mode). */
  readonly embed: (x: tf.Tensor4D) => tf.Tensor2D;
  /** How images reach it: decoded square at `size`, `channels`, normalized with `mean` / `std`. */
  readonly input: EvalInput;
  /** The index searched; `store` (when given) makes it writable through /items, durably. */
  readonly index: VectorIndex;
  readonly store?: IndexStore | null;
  /** Bearer token every request but /health must carry; null: none. */
  readonly token?: string | null;
  /** Largest request body, bytes. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** Largest image, pixels (width × height), refused before decoding. Default 40 000 000. */
  readonly maxPixels?: number;
  /** Images per request (JSON batches). Default 64. */
  readonly maxImagesPerRequest?: number;
  /** Largest k. Default 1000. */
  readonly maxK?: number;
  /**
   * Micro-batching: the most images per forward pass (default 32; 1 turns batching off), and how long an image that
   * finds the encoder idle waits for the images of other requests already received and still decoding (ms; default 4).
   * A lone request never waits; images that arrive while a pass runs go together into the next.
   */
  readonly maxBatch?: number;
  readonly batchWindowMs?: number;
  /** Images waiting for the encoder before new requests get 503. Default 512. */
  readonly maxQueue?: number;
  /** A request's time limit, ms: receiving it (fastify's requestTimeout) and waiting for the encoder or a search (503 TIMEOUT). Default 30 000. */
  readonly requestTimeoutMs?: number;
  /** Fastify's logger (default off). */
  readonly logger?: boolean;
}

/** An HTTP error with a stable code, sent as {"error", "code"}. */
export class ServeError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** `work`, or a 503 TIMEOUT when it takes longer than `ms` (the work itself is not cancelled: its result is dropped). */
export function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ServeError(503, 'TIMEOUT', `the request took longer than ${ms} ms; retry later`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

interface Pending {
  readonly pixels: Uint8Array;
  readonly resolve: (v: Float32Array) => void;
  readonly reject: (e: unknown) => void;
}

/** Embeds decoded images in batches: whatever arrives within the window goes through the encoder together. */
export class MicroBatcher {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Forward passes run and images embedded (for /health and the load figures). */
  passes = 0;
  images = 0;

  constructor(
    private readonly encode: (pixels: readonly Uint8Array[]) => Promise<Float32Array[]>,
    private readonly maxBatch: number,
    private readonly windowMs: number,
    private readonly maxQueue: number,
    /** Images received but not yet queued (still decoding): worth waiting for, up to the window. */
    private readonly expected: () => number = () => 0,
  ) {}

  get waiting(): number {
    return this.queue.length;
  }

  /** Queues images; refuses (503) when the queue cannot take them all. */
  embed(images: readonly Uint8Array[]): Promise<Float32Array[]> {
    if (this.queue.length + images.length > this.maxQueue) {
      return Promise.reject(new ServeError(503, 'QUEUE_FULL', `the encoder's queue is full (${this.queue.length} images waiting, at most ${this.maxQueue}); retry later`));
    }
    const all = images.map((pixels) => new Promise<Float32Array>((resolve, reject) => this.queue.push({ pixels, resolve, reject })));
    this.schedule();
    return Promise.all(all);
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    // Wait (at most the window) only for images already received: a lone request goes at once.
    const want = Math.min(this.maxBatch, this.queue.length + this.expected());
    if (this.queue.length >= want || this.windowMs <= 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      void this.flush();
    } else this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.windowMs);
  }

  private async flush(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const batch = this.queue.splice(0, this.maxBatch);
    try {
      const out = await this.encode(batch.map((p) => p.pixels));
      this.passes++;
      this.images += batch.length;
      batch.forEach((p, i) => p.resolve(out[i]!));
    } catch (e) {
      for (const p of batch) p.reject(e);
    } finally {
      this.running = false;
      this.schedule();
    }
  }
}

/**
 * Cosine search of the queries that arrive together in one matrix product: [queries, dim] × [dim, items] on the
 * backend (oneDNN's GEMM on the native one), so the index is read once per pass instead of once per query, then
 * top-k. The matrix is kept as a tensor until the index changes.
 */
export class BatchedSearch {
  private cached: { version: number; m: tf.Tensor2D } | null = null;
  private queue: { q: Float32Array; k: number; exclude: string | undefined; resolve: (h: Hit[]) => void; reject: (e: unknown) => void }[] = [];
  private running = false;
  passes = 0;

  constructor(
    private readonly index: VectorIndex,
    private readonly maxBatch = 64,
    private readonly maxQueue = 512,
  ) {}

  search(query: Float32Array, k: number, exclude?: string): Promise<Hit[]> {
    if (this.queue.length >= this.maxQueue) return Promise.reject(new ServeError(503, 'QUEUE_FULL', `the search queue is full (${this.queue.length} waiting); retry later`));
    return new Promise((resolve, reject) => {
      this.queue.push({ q: query, k, exclude, resolve, reject });
      if (!this.running) void this.flush();
    });
  }

  private matrix(): tf.Tensor2D {
    if (this.cached?.version !== this.index.version) {
      this.cached?.m.dispose();
      this.cached = { version: this.index.version, m: tf.tensor2d(this.index.matrix(), [this.index.size, this.index.dim]) };
    }
    return this.cached.m;
  }

  private async flush(): Promise<void> {
    this.running = true;
    const batch = this.queue.splice(0, this.maxBatch);
    try {
      const n = this.index.size;
      if (n === 0) {
        for (const b of batch) b.resolve([]);
        return;
      }
      const d = this.index.dim;
      const q = new Float32Array(batch.length * d);
      batch.forEach((b, i) => q.set(unitVector(b.q) ?? new Float32Array(d), i * d));
      const m = this.matrix();
      const scores = tf.tidy(() => tf.matMul(tf.tensor2d(q, [batch.length, d]), m, false, true));
      const all = (await scores.data()) as Float32Array;
      scores.dispose();
      this.passes++;
      batch.forEach((b, i) => {
        const best = topK(all.subarray(i * n, (i + 1) * n), b.k + (b.exclude === undefined ? 0 : 1));
        const hits: Hit[] = [];
        for (const r of best) {
          const item = this.index.itemAt(r);
          if (item.id !== b.exclude && hits.length < b.k) hits.push({ ...item, score: Math.max(-1, Math.min(1, all[i * n + r]!)) });
        }
        b.resolve(hits);
      });
    } catch (e) {
      for (const b of batch) b.reject(e);
    } finally {
      this.running = false;
      if (this.queue.length) void this.flush();
    }
  }

  dispose(): void {
    this.cached?.m.dispose();
    this.cached = null;
  }
}

const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/avif', 'application/octet-stream'];

/** The OpenAPI 3.0 description of the service. */
export function openApi(dim: number): Record<string, unknown> {
  const error = { description: 'a bad request', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  const imageBody = {
    required: true,
    content: {
      ...Object.fromEntries(IMAGE_TYPES.map((t) => [t, { schema: { type: 'string', format: 'binary' } }])),
      'application/json': { schema: { type: 'object', properties: { image: { type: 'string', format: 'byte' }, images: { type: 'array', items: { type: 'string', format: 'byte' } } } } },
    },
  };
  const vector = { type: 'array', items: { type: 'number' }, minItems: dim, maxItems: dim };
  return {
    openapi: '3.0.3',
    info: { title: 'byol serve', version: '1', description: 'Embeddings of a BYOL encoder and cosine search over an index of them.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: { type: 'object', required: ['error', 'code'], properties: { error: { type: 'string' }, code: { type: 'string' } } },
        Hit: { type: 'object', properties: { id: { type: 'string' }, score: { type: 'number' }, label: { oneOf: [{ type: 'string' }, { type: 'number' }], nullable: true } } },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/health': { get: { security: [], responses: { '200': { description: 'up', content: { 'application/json': { schema: { type: 'object' } } } } } } },
      '/embed': {
        post: {
          requestBody: imageBody,
          responses: {
            '200': { description: 'the embedding(s)', content: { 'application/json': { schema: { type: 'object', properties: { embedding: vector, embeddings: { type: 'array', items: vector } } } } } },
            '400': error, '401': error, '413': error, '415': error, '503': error,
          },
        },
      },
      '/search': {
        post: {
          parameters: [{ name: 'k', in: 'query', schema: { type: 'integer', minimum: 1, default: 10 } }],
          requestBody: {
            required: true,
            content: {
              ...imageBody.content,
              'application/json': { schema: { type: 'object', properties: { image: { type: 'string', format: 'byte' }, id: { type: 'string' }, embedding: vector } } },
            },
          },
          responses: { '200': { description: 'nearest items, best first', content: { 'application/json': { schema: { type: 'object', properties: { results: { type: 'array', items: { $ref: '#/components/schemas/Hit' } } } } } } }, '400': error, '401': error, '404': error, '503': error },
        },
      },
      '/items': {
        post: {
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: { type: 'object', properties: { items: { type: 'array', items: { type: 'object', required: ['id'], properties: { id: { type: 'string' }, label: { oneOf: [{ type: 'string' }, { type: 'number' }] }, image: { type: 'string', format: 'byte' }, embedding: vector } } } } } },
              ...Object.fromEntries(IMAGE_TYPES.map((t) => [t, { schema: { type: 'string', format: 'binary' } }])),
            },
          },
          parameters: [{ name: 'id', in: 'query', schema: { type: 'string' } }, { name: 'label', in: 'query', schema: { type: 'string' } }],
          responses: { '200': { description: 'added (or replaced)', content: { 'application/json': { schema: { type: 'object' } } } }, '400': error, '401': error, '409': error, '503': error },
        },
      },
      '/items/{id}': { delete: { parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': { description: 'removed' }, '401': error, '404': error, '409': error } } },
    },
  };
}

/** Builds the service (not listening: call `listen`, or `inject` in tests). */
export async function buildServer(o: ServeOptions): Promise<FastifyInstance> {
  const maxBody = o.maxBodyBytes ?? 16 * 2 ** 20;
  const maxPixels = o.maxPixels ?? 40_000_000;
  const maxImages = o.maxImagesPerRequest ?? 64;
  const maxK = o.maxK ?? 1000;
  const timeout = o.requestTimeoutMs ?? 30_000;
  const { size, channels } = o.input;
  const sharp = await loadSharp();
  const dim = o.index.dim;

  const encode = async (images: readonly Uint8Array[]): Promise<Float32Array[]> => {
    const per = size * size * channels;
    const all = new Uint8Array(images.length * per);
    images.forEach((im, i) => all.set(im, i * per));
    const f = tf.tidy(() => o.embed(encoderInput(all, [images.length, size, size, channels], o.input)));
    try {
      const data = (await f.data()) as Float32Array;
      const d = f.shape[1];
      if (d !== dim) throw new ServeError(500, 'DIM_MISMATCH', `the encoder gives ${d} features, the index holds ${dim}`);
      return images.map((_, i) => data.slice(i * d, (i + 1) * d));
    } finally {
      f.dispose();
    }
  };
  // Images of requests in flight that have not reached the batcher yet (decoding): the batcher waits for them.
  let decoding = 0;
  const batcher = new MicroBatcher(encode, o.maxBatch ?? 32, o.batchWindowMs ?? 4, o.maxQueue ?? 512, () => decoding);
  const searcher = new BatchedSearch(o.index, (o.maxBatch ?? 32) === 1 ? 1 : 64, o.maxQueue ?? 512);

  const app = Fastify({ logger: o.logger ?? false, bodyLimit: maxBody, connectionTimeout: timeout + 5_000, requestTimeout: timeout, return503OnClosing: true });
  // Image bytes or JSON; anything else (text/plain, forms, …) is 415.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(IMAGE_TYPES, { parseAs: 'buffer', bodyLimit: maxBody }, (_req, body, done) => done(null, body));

  const decode = async (bytes: Buffer): Promise<Uint8Array> => {
    if (bytes.length === 0) throw new ServeError(400, 'INVALID_IMAGE', 'the image is empty');
    try {
      return await decodeSquare(sharp, bytes, size, channels, 'cover', maxPixels);
    } catch (e) {
      const m = (e as Error).message.split('\n')[0] ?? '';
      if (/pixel limit/i.test(m)) throw new ServeError(413, 'IMAGE_TOO_LARGE', `the image has more than ${maxPixels} pixels`);
      throw new ServeError(400, 'INVALID_IMAGE', `cannot decode the image (${m})`);
    }
  };
  const base64 = (v: unknown, what: string): Buffer => {
    if (typeof v !== 'string' || v.length === 0 || !/^[A-Za-z0-9+/=\s_-]*$/.test(v)) throw new ServeError(400, 'INVALID_BODY', `${what} must be a base64 string of image bytes`);
    return Buffer.from(v, 'base64');
  };
  /** The images a request carries: its body's bytes, or JSON {image} / {images}. */
  const imagesOf = (req: FastifyRequest, json: Record<string, unknown> | null): Buffer[] => {
    if (Buffer.isBuffer(req.body)) return [req.body];
    if (json && 'image' in json) return [base64(json['image'], 'image')];
    if (json && Array.isArray(json['images'])) {
      const list = json['images'];
      if (list.length === 0 || list.length > maxImages) throw new ServeError(400, 'INVALID_BODY', `images must hold 1 to ${maxImages} images; got ${list.length}`);
      return list.map((v, i) => base64(v, `images[${i}]`));
    }
    throw new ServeError(400, 'INVALID_BODY', 'send image bytes (Content-Type image/jpeg, image/png, …) or JSON {"image": base64} / {"images": [base64…]}');
  };
  const jsonOf = (req: FastifyRequest): Record<string, unknown> | null => {
    if (Buffer.isBuffer(req.body) || req.body === undefined || req.body === null) return null;
    if (typeof req.body !== 'object' || Array.isArray(req.body)) throw new ServeError(400, 'INVALID_BODY', 'the JSON body must be an object');
    return req.body as Record<string, unknown>;
  };
  const embedAll = async (images: Buffer[]) => {
    decoding += images.length;
    let decoded: Uint8Array[];
    try {
      decoded = await Promise.all(images.map(decode));
    } finally {
      decoding -= images.length;
    }
    return withTimeout(batcher.embed(decoded), timeout);
  };
  const vectorOf = (v: unknown): Float32Array => {
    if (!Array.isArray(v) || v.length !== dim || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new ServeError(400, 'INVALID_BODY', `embedding must be ${dim} finite numbers`);
    return Float32Array.from(v as number[]);
  };
  const idOf = (v: unknown): string => {
    try {
      return checkId(v);
    } catch (e) {
      throw new ServeError(400, 'INVALID_ID', (e as Error).message);
    }
  };
  const writable = () => {
    if (!o.store) throw new ServeError(409, 'READ_ONLY', 'this index is read-only (served from an embeddings file); serve an index folder to change it');
    return o.store;
  };

  const expected = o.token ? Buffer.from(`Bearer ${o.token}`) : null;
  app.addHook('onRequest', async (req) => {
    if (!expected || req.url === '/health') return;
    const got = Buffer.from(req.headers.authorization ?? '');
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) throw new ServeError(401, 'UNAUTHORIZED', 'a valid bearer token is required (Authorization: Bearer …)');
  });

  app.setErrorHandler((e: Error & { statusCode?: number; code?: string }, _req, reply: FastifyReply) => {
    if (e instanceof ServeError) return reply.status(e.status).send({ error: e.message, code: e.code });
    if (e instanceof ByolError) return reply.status(400).send({ error: e.message, code: e.code });
    const status = e.statusCode && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
    const code = e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'BODY_TOO_LARGE' : e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'UNSUPPORTED_MEDIA_TYPE' : e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'INVALID_BODY' : status === 500 ? 'INTERNAL' : (e.code ?? 'BAD_REQUEST');
    if (status === 500) app.log.error(e);
    return reply.status(status).send({ error: status === 500 ? 'internal error' : e.message, code });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'NOT_FOUND' }));

  app.addHook('onClose', async () => searcher.dispose());
  app.get('/health', async () => ({ status: 'ok', items: o.index.size, dim, input: o.input, writable: Boolean(o.store), queue: batcher.waiting, passes: batcher.passes, embedded: batcher.images }));
  app.get('/openapi.json', async () => openApi(dim));

  app.post('/embed', async (req) => {
    const json = jsonOf(req);
    const many = json !== null && Array.isArray(json['images']);
    const out = await embedAll(imagesOf(req, json));
    return many ? { embeddings: out.map((v) => Array.from(v)) } : { embedding: Array.from(out[0]!) };
  });

  app.post('/search', async (req) => {
    const q = req.query as Record<string, string | undefined>;
    const k = q['k'] === undefined ? 10 : Number(q['k']);
    if (!(Number.isInteger(k) && k >= 1 && k <= maxK)) throw new ServeError(400, 'INVALID_K', `k must be an integer from 1 to ${maxK}; got ${JSON.stringify(q['k'])}`);
    const json = jsonOf(req);
    if (json && 'id' in json) {
      const id = idOf(json['id']);
      const v = o.index.vector(id);
      if (!v) throw new ServeError(404, 'UNKNOWN_ID', `no item ${JSON.stringify(id)} in the index`);
      return { results: await withTimeout(searcher.search(v, k, id), timeout) };
    }
    const query = json && 'embedding' in json ? vectorOf(json['embedding']) : (await embedAll(imagesOf(req, json)))[0]!;
    return { results: await withTimeout(searcher.search(query, k), timeout) };
  });

  app.post('/items', async (req) => {
    const store = writable();
    const json = jsonOf(req);
    const q = req.query as Record<string, string | undefined>;
    let entries: { id: string; label: string | number | null; image?: Buffer; embedding?: Float32Array }[];
    if (Buffer.isBuffer(req.body)) entries = [{ id: idOf(q['id']), label: q['label'] ?? null, image: req.body }];
    else {
      const list = json?.['items'];
      if (!Array.isArray(list) || list.length === 0 || list.length > maxImages) throw new ServeError(400, 'INVALID_BODY', `items must be an array of 1 to ${maxImages} {"id", "label"?, "image" | "embedding"}`);
      entries = list.map((it: unknown, i) => {
        if (!it || typeof it !== 'object') throw new ServeError(400, 'INVALID_BODY', `items[${i}] must be an object`);
        const r = it as Record<string, unknown>;
        const label = typeof r['label'] === 'string' || typeof r['label'] === 'number' ? r['label'] : null;
        return { id: idOf(r['id']), label, ...('embedding' in r ? { embedding: vectorOf(r['embedding']) } : { image: base64(r['image'], `items[${i}].image`) }) };
      });
    }
    const toEmbed = entries.filter((e) => e.image);
    const vectors = toEmbed.length ? await embedAll(toEmbed.map((e) => e.image!)) : [];
    toEmbed.forEach((e, i) => (e.embedding = vectors[i]!));
    await store.add(entries.map((e) => ({ item: { id: e.id, label: e.label }, vector: e.embedding! })));
    return { added: entries.map((e) => e.id), items: o.index.size };
  });

  app.delete('/items/:id', async (req) => {
    const store = writable();
    const id = idOf((req.params as { id: string }).id);
    if (!(await store.remove(id))) throw new ServeError(404, 'UNKNOWN_ID', `no item ${JSON.stringify(id)} in the index`);
    return { removed: id, items: o.index.size };
  });

  return app;
}
