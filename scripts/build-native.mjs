#!/usr/bin/env node
// Builds byol's oneDNN addon during `npm install` (or `npm run install` in a clone) when oneDNN is found. Never fails
// the install: without oneDNN the library uses the wasm backend and says so at run time. The whole build's output
// goes to native/build-native.log, named on failure.
//
// Where oneDNN is looked for, in order: DNNL_ROOT (a prefix with include/ and lib/), `pkg-config dnnl`, CONDA_PREFIX,
// Homebrew's prefixes (/opt/homebrew, /usr/local), then the system's own paths (Debian/Ubuntu libdnnl-dev). oneDNN
// 2.x and 3.x both work. On macOS the addon is compiled with clang and Homebrew's libomp (`brew install libomp`):
// written, not tested here.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const logPath = join(root, 'native', 'build-native.log');
const log = [];
const say = (line) => {
  console.log(line);
  log.push(line);
};
const saveLog = () => writeFileSync(logPath, `${log.join('\n')}\n`);

if (process.env.BYOL_SKIP_NATIVE) {
  say('byol: BYOL_SKIP_NATIVE set, not building the native backend');
  process.exit(0);
}

/** A prefix holding oneDNN's headers: { include, lib, how }, or null. */
function prefixAt(prefix, how) {
  if (!prefix || !existsSync(join(prefix, 'include', 'oneapi', 'dnnl', 'dnnl.hpp'))) return null;
  const lib = ['lib', 'lib64', join('lib', 'x86_64-linux-gnu'), join('lib', 'aarch64-linux-gnu')].map((l) => join(prefix, l)).find((l) => existsSync(l)) ?? join(prefix, 'lib');
  return { include: join(prefix, 'include'), lib, how };
}

function pkgConfig() {
  const r = spawnSync('pkg-config', ['--variable=prefix', 'dnnl'], { encoding: 'utf8' });
  return r.status === 0 ? prefixAt(r.stdout.trim(), 'pkg-config dnnl') : null;
}

function findOneDnn() {
  const system = ['/usr/include/oneapi/dnnl/dnnl.hpp'].some(existsSync) ? { include: '', lib: '', how: 'the system paths (/usr/include)' } : null;
  return (
    prefixAt(process.env.DNNL_ROOT, `DNNL_ROOT=${process.env.DNNL_ROOT}`) ??
    pkgConfig() ??
    prefixAt(process.env.CONDA_PREFIX, `CONDA_PREFIX=${process.env.CONDA_PREFIX}`) ??
    prefixAt('/opt/homebrew/opt/onednn', 'Homebrew (/opt/homebrew)') ??
    prefixAt('/usr/local/opt/onednn', 'Homebrew (/usr/local)') ??
    prefixAt('/opt/homebrew', 'Homebrew (/opt/homebrew)') ??
    system ??
    prefixAt('/usr/local', '/usr/local')
  );
}

const found = findOneDnn();
if (!found) {
  say(
    'byol: oneDNN not found (looked at DNNL_ROOT, pkg-config dnnl, CONDA_PREFIX, Homebrew, /usr/include, /usr/local); the native backend is not built, wasm will be used. ' +
      'Install it (Debian/Ubuntu: apt-get install libdnnl-dev; macOS: brew install onednn libomp; conda: conda install -c conda-forge onednn), then run `npm rebuild byol` (or `npm run install` in a clone).',
  );
  saveLog();
  process.exit(0);
}
say(`byol: building the native backend against oneDNN from ${found.how}`);
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const env = { ...process.env, BYOL_DNNL_INCLUDE: found.include, BYOL_DNNL_LIB: found.lib };
const r = spawnSync(cmd, args, { cwd: join(root, 'native'), stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env });
log.push(r.stdout ?? '', r.stderr ?? '', r.error ? String(r.error) : '');
if (r.status !== 0) {
  const why = (r.stderr || r.error?.message || '').trim().split('\n').filter((l) => /error/i.test(l)).slice(0, 2).join(' | ');
  say(`byol: building the native backend failed (${why || `exit ${r.status}`}); wasm will be used. The whole build log: ${logPath}`);
  saveLog();
  process.exit(0);
}
say('byol: native backend built (oneDNN)');
saveLog();
