/**
 * Picks the page's tfjs backend: WebGPU where the browser has it, else WebGL, else WebAssembly (which trains
 * convolutions with byol's kernels), else the plain JavaScript cpu backend. `?backend=NAME` asks for one.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { ByolError, installWasmFastPaths } from '../../src/index.js';

export const PAGE_BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type PageBackend = (typeof PAGE_BACKENDS)[number];

export interface BackendChoice {
  readonly name: PageBackend;
  /** Backends tried before it, with why each was not used. */
  readonly skipped: { name: PageBackend; reason: string }[];
}

/** Sets up the first backend that works, starting at `wanted` (default the fastest). */
export async function chooseBackend(wanted?: string | null): Promise<BackendChoice> {
  if (wanted && !(PAGE_BACKENDS as readonly string[]).includes(wanted)) {
    throw new ByolError('INVALID_OPTION', `?backend= must be one of ${PAGE_BACKENDS.join(', ')}; got "${wanted}"`, 'backend');
  }
  // The wasm binaries sit beside the page (copied by the build).
  setWasmPaths(new URL('./', location.href).href);
  const order = wanted ? [wanted as PageBackend] : [...PAGE_BACKENDS];
  const skipped: { name: PageBackend; reason: string }[] = [];
  for (const name of order) {
    if (name === 'webgpu' && !('gpu' in navigator)) {
      skipped.push({ name, reason: 'this browser has no WebGPU (navigator.gpu)' });
      continue;
    }
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        if (name === 'wasm') installWasmFastPaths();
        return { name, skipped };
      }
      const why: Record<PageBackend, string> = {
        webgpu: 'no WebGPU adapter',
        webgl: 'no WebGL context (disabled, or no GPU and no software rasterizer)',
        wasm: 'WebAssembly did not start',
        cpu: 'it did not start',
      };
      skipped.push({ name, reason: why[name] });
    } catch (e) {
      skipped.push({ name, reason: (e as Error).message.split('\n')[0] ?? 'error' });
    }
  }
  throw new ByolError('UNSUPPORTED', `no tfjs backend works in this browser: ${skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`, 'backend');
}
