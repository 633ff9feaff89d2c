/**
 * Output buffers of the native backend, reused when their tensor is disposed.
 *
 * Why: a training step allocates hundreds of multi-megabyte outputs. Left to V8, each is a fresh ArrayBuffer that
 * is only freed at the next garbage collection, which the external-memory pressure then forces every few
 * milliseconds (about a tenth of a ResNet step went to GC and allocation). tfjs disposes tensors explicitly, so a
 * disposed output can go straight back to a free list by length and serve the next output of that length, warm in
 * memory and without a GC.
 *
 * Safety: a buffer is reused only if this pool allocated it and nothing else can still see it. The backend (see
 * NativeBackend) returns copies of pooled buffers to readers outside kernels (dataSync, data, arraySync), and copies
 * any kernel output that aliases a pooled buffer under another tensor (e.g. the cpu backend's Slice returns a
 * subarray view).
 */
/** On a miss, live plus free memory may reach this multiple of the working set before old free arrays go. */
export const MISS_SLACK = 1.5;

export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  private readonly owned = new WeakSet<ArrayBuffer>();
  private held = 0;
  private live = 0;
  private peakLive = 0;
  private reused = 0;
  private allocated = 0;

  /**
   * @param limitBytes the most bytes kept free for reuse. The pool also keeps no more than the most its buffers ever
   *   held live at once (so free memory never exceeds the working set it serves). Beyond either bound the oldest free
   *   buffers are dropped (left to the garbage collector); a buffer larger than the bound is not kept.
   * @param minLength arrays shorter than this are ordinary Float32Arrays (V8 handles small ones well).
   */
  constructor(
    readonly limitBytes: number,
    readonly minLength = 16384,
  ) {}

  /** An array of `n` floats with unspecified contents (a reused buffer, or fresh memory without the zero fill). */
  take(n: number): Float32Array {
    if (n < this.minLength) return new Float32Array(n);
    const list = this.free.get(n);
    const hit = list?.pop();
    if (hit) {
      this.held -= hit.byteLength;
      this.reused++;
      this.addLive(hit.byteLength);
      return hit;
    }
    // A miss: first drop the oldest free arrays that would take live + free memory more than half past the working
    // set (the most ever live at once), so that a change of shapes (training, then evaluation) does not keep the old
    // shapes' arrays on top of the new ones. (The slack: a pool by length needs, per length, the most arrays of that
    // length live at once, and those maxima fall at different moments of a step, so together they exceed the most
    // ever live at once. Without slack each miss dropped arrays the same step still needed — a ResNet-18 step missed
    // 120 times instead of none, 8 % slower; with bf16 activations, whose half-length arrays share lengths with float32
    // ones of other shapes, a quarter's slack still missed 117 times a step (~1 000 ms), half 18 (~920 ms).)
    this.dropOldest(Math.max(0, MISS_SLACK * this.peakLive - this.live - n * 4));
    this.allocated++;
    this.addLive(n * 4);
    // allocUnsafeSlow: no zero fill, and a buffer of its own (never a slice of Node's shared small-buffer pool).
    const b = Buffer.allocUnsafeSlow(n * 4);
    this.owned.add(b.buffer);
    return new Float32Array(b.buffer, 0, n);
  }

  private addLive(bytes: number): void {
    this.live += bytes;
    this.peakLive = Math.max(this.peakLive, this.live);
  }

  /** Whether `v` lies in a buffer this pool allocated (whole or as a view). */
  owns(v: ArrayBufferView): boolean {
    return this.owned.has(v.buffer as ArrayBuffer);
  }

  /** Takes back an array whose tensor is gone; ignores arrays it did not allocate and views of part of one. */
  give(v: unknown): void {
    if (!(v instanceof Float32Array) || !this.owns(v) || v.byteOffset !== 0 || v.byteLength !== v.buffer.byteLength) return;
    this.live = Math.max(0, this.live - v.byteLength);
    const bound = Math.min(this.limitBytes, this.peakLive);
    if (v.byteLength > bound) return;
    this.dropOldest(bound - v.byteLength);
    let list = this.free.get(v.length);
    if (!list) this.free.set(v.length, (list = []));
    list.push(v);
    this.held += v.byteLength;
  }

  /** Drops the oldest free arrays until at most `maxHeld` bytes stay free. */
  private dropOldest(maxHeld: number): void {
    for (const [n, list] of this.free) {
      if (this.held <= maxHeld) break;
      while (list.length > 0 && this.held > maxHeld) this.held -= list.shift()!.byteLength;
      if (list.length === 0) this.free.delete(n);
    }
  }

  /** Drops every free buffer (the garbage collector reclaims them). */
  clear(): void {
    this.free.clear();
    this.held = 0;
  }

  /** Bytes held free for reuse, the most bytes its buffers held live at once, and how many takes were served from
   * the free lists or by fresh memory. */
  stats(): { freeBytes: number; peakLiveBytes: number; reused: number; allocated: number } {
    return { freeBytes: this.held, peakLiveBytes: this.peakLive, reused: this.reused, allocated: this.allocated };
  }
}
