/**
 * The main entry as a browser app would bundle it (esbuild, platform browser, tree shaking by package.json's
 * `sideEffects`): it must build, hold no Node built-in, and still register what byol registers at import — the cpu
 * backend and byol's gradients — even when the app imports a single name.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('a browser bundle of the main entry builds without Node built-ins and registers the cpu backend and byol\'s gradients', async () => {
  const dir = mkdtempSync(join(root, 'dist', 'bundle-'));
  try {
    // An app that uses one class: everything byol registers at import must survive tree shaking.
    const app = join(dir, 'app.js');
    writeFileSync(
      app,
      [
        "import { Byol } from 'byol';",
        "import * as tf from '@tensorflow/tfjs-core';",
        "tf.setBackend('cpu').then(() => report({ byol: typeof Byol, backend: tf.getBackend(), gradients: ['ByolBatchNormTrain', 'ByolAddRelu'].filter((k) => tf.getGradient(k) !== undefined) }));",
      ].join('\n'),
    );
    const result = await build({ entryPoints: [app], bundle: true, platform: 'browser', format: 'iife', target: 'es2022', write: false, logLevel: 'silent', nodePaths: [join(root, 'node_modules')], alias: { byol: join(root, 'dist', 'src', 'index.js') } });
    assert.deepEqual(result.errors, []);
    const text = result.outputFiles[0]!.text;
    assert.doesNotMatch(text, /require\(["'](node:)?(fs|path|os|crypto|child_process|worker_threads)["']\)|from\s*["']node:/, 'no Node built-in in the bundle');
    // Run it where Node is not: a bare context with the few globals a page or a worker has.
    let reported: unknown = null;
    const context = vm.createContext({ report: (r: unknown) => (reported = r), console, setTimeout, clearTimeout, queueMicrotask, TextEncoder, TextDecoder, performance, Promise });
    context['self'] = context; // a page's (or a worker's) name for its global object
    vm.runInContext(text, context);
    for (let i = 0; i < 100 && reported === null; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(JSON.parse(JSON.stringify(reported)), { byol: 'function', backend: 'cpu', gradients: ['ByolBatchNormTrain', 'ByolAddRelu'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
