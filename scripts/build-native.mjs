#!/usr/bin/env node
// Builds byol's oneDNN addon during `npm install` when oneDNN's headers are present. Never fails the install:
// without oneDNN the library uses the wasm backend and says so once at run time.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const headers = ['/usr/include/oneapi/dnnl/dnnl.hpp', '/usr/local/include/oneapi/dnnl/dnnl.hpp', '/opt/homebrew/include/oneapi/dnnl/dnnl.hpp'];
if (process.env.BYOL_SKIP_NATIVE) {
  console.log('byol: BYOL_SKIP_NATIVE set, not building the native backend');
  process.exit(0);
}
if (!headers.some(existsSync) && !process.env.CPATH) {
  console.log('byol: oneDNN not found (apt-get install libdnnl-dev, brew install onednn, or conda install -c conda-forge onednn); the native backend is not built, wasm will be used');
  process.exit(0);
}
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const r = spawnSync(cmd, args, { cwd: join(root, 'native'), stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  const why = (r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ');
  console.log(`byol: building the native backend failed (${why}); wasm will be used`);
  process.exit(0);
}
console.log('byol: native backend built (oneDNN)');
