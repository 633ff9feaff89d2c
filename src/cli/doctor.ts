/**
 * `byol doctor`: what this machine gives byol — the backend training would use and why, oneDNN's version and the
 * instruction set it dispatches, threads, whether bf16 is supported and faster here, the last native build's log —
 * and a short measurement of training speed, turned into how long the default runs would take. Problems are
 * one-line warnings; it always exits 0.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { Byol } from '../byol/learner.js';
import type { ByolOptions } from '../byol/options.js';
import { loadNativeAddon, NATIVE_HINT, nativeLoadError, setNativePrecision, useBackend, type NodeBackendName } from '../node.js';

/** Where the install script keeps the last native build's output. */
export const BUILD_LOG = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'native', 'build-native.log');

export interface DoctorReport {
  readonly node: string;
  readonly platform: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly backend: NodeBackendName;
  readonly backendWhy: string;
  readonly onednn: { readonly version: string; readonly fp32: string; readonly bf16: string; readonly threads: number } | null;
  readonly buildLog: { readonly path: string; readonly last: string } | null;
  /** Images/s of one training step, by workload; null where not measured (and why in `notes`). */
  readonly speed: Readonly<Record<string, number | null>>;
  /** bf16 / fp32 on the ConvNet step, where bf16 runs. */
  readonly bf16Speedup: number | null;
  readonly estimates: readonly string[];
  readonly warnings: readonly string[];
}

/** Images/s of BYOL steps of `options` on images of `shape`, timed for about `seconds` after one warm-up step. */
async function stepsPerSecond(options: ByolOptions, shape: [number, number, number, number], seconds: number): Promise<number> {
  const learner = new Byol({ ...options, seed: 1 });
  const [a, b] = tf.tidy(() => [tf.randomUniform(shape, 0, 1, 'float32', 1), tf.randomUniform(shape, 0, 1, 'float32', 2)]);
  try {
    await learner.step(a!, b!);
    const t0 = performance.now();
    let n = 0;
    do {
      await learner.step(a!, b!);
      n++;
    } while (performance.now() - t0 < seconds * 1000 && n < 50);
    return (n * shape[0]) / ((performance.now() - t0) / 1000);
  } finally {
    learner.dispose();
    tf.dispose([a!, b!]);
  }
}

function duration(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

/** Examines this machine; `seconds` bounds each speed measurement. */
export async function runDoctor(seconds = 2): Promise<DoctorReport> {
  const warnings: string[] = [];
  const addon = loadNativeAddon();
  let backend: NodeBackendName;
  let backendWhy: string;
  if (addon) {
    backend = 'native';
    backendWhy = 'the native addon (oneDNN) is built and loads';
  } else {
    backend = 'wasm';
    backendWhy = `the native addon is unavailable (${nativeLoadError()})`;
    warnings.push(`native backend unavailable (${nativeLoadError()}): training runs on wasm (on the development machine 9× slower than native for the ConvNet, 13× for the CIFAR ResNet-18); ${NATIVE_HINT}`);
  }
  await useBackend(backend);
  const onednn = addon ? { version: addon.dnnlVersion, ...addon.implInfo(), threads: addon.getThreads() } : null;
  if (onednn && onednn.threads < cpus().length) warnings.push(`oneDNN uses ${onednn.threads} of ${cpus().length} cores (OMP_NUM_THREADS or --threads)`);
  if (onednn && /ref|gemm:/.test(onednn.fp32)) warnings.push(`oneDNN's float32 convolution here is ${onednn.fp32}, not a JIT kernel: expect it slow`);

  let buildLog: DoctorReport['buildLog'] = null;
  if (existsSync(BUILD_LOG)) {
    const last = readFileSync(BUILD_LOG, 'utf8').trim().split('\n').filter((l) => l.startsWith('byol:')).pop() ?? '';
    buildLog = { path: BUILD_LOG, last };
    if (/failed/.test(last)) warnings.push(`the last native build failed; its whole log: ${BUILD_LOG}`);
  }

  // Speed: the ConvNet step at batch 64 with the paper's heads (the default Fashion-MNIST run), then the CIFAR
  // ResNet-18 at batch 32 where the backend makes that quick enough.
  const speed: Record<string, number | null> = {};
  const convnet: ByolOptions = { encoder: { name: 'convnet', inputShape: [28, 28, 1] }, batchSize: 64, totalSteps: 1000 };
  speed['ConvNet 28×28, batch 64'] = await stepsPerSecond(convnet, [64, 28, 28, 1], seconds);
  let bf16Speedup: number | null = null;
  if (addon) {
    if (setNativePrecision('bf16')) {
      const bf16 = await stepsPerSecond(convnet, [64, 28, 28, 1], seconds);
      setNativePrecision('fp32');
      bf16Speedup = bf16 / speed['ConvNet 28×28, batch 64']!;
      speed['ConvNet 28×28, batch 64, bf16'] = bf16;
      if (bf16Speedup < 1.05) warnings.push(`bf16 is not faster here on the ConvNet (${bf16Speedup.toFixed(2)}×): training stays fp32 unless told --precision bf16`);
    } else warnings.push('bf16 is not supported on this CPU (it needs AVX512-BF16 or AMX): training runs in fp32');
  }
  const resnet = 'CIFAR ResNet-18, batch 32';
  speed[resnet] = backend === 'native' ? await stepsPerSecond({ encoder: { name: 'resnet18-cifar', inputShape: [32, 32, 3] }, batchSize: 32, totalSteps: 1000 }, [32, 32, 32, 3], seconds) : null;

  const estimates: string[] = [];
  const convIps = speed['ConvNet 28×28, batch 64']!;
  estimates.push(`byol pretrain fashion-mnist (60 000 images × 100 epochs, ConvNet): about ${duration((60_000 * 100) / convIps)} at ${convIps.toFixed(0)} images/s`);
  if (bf16Speedup !== null && bf16Speedup >= 1.05) estimates.push(`  with --precision bf16: about ${duration((60_000 * 100) / (convIps * bf16Speedup))} (${bf16Speedup.toFixed(2)}× here)`);
  const resIps = speed[resnet];
  estimates.push(
    resIps
      ? `byol pretrain cifar10:DIR (50 000 images × 100 epochs, ResNet-18): about ${duration((50_000 * 100) / resIps)} at ${resIps.toFixed(1)} images/s`
      : `byol pretrain cifar10:DIR (ResNet-18): not measured on ${backend} (about 2.5 images/s at batch 16 on the development machine: weeks for 100 epochs)`,
  );
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    backend,
    backendWhy,
    onednn,
    buildLog,
    speed,
    bf16Speedup,
    estimates,
    warnings,
  };
}

/** The report as lines for a person. */
export function doctorLines(r: DoctorReport): string[] {
  const lines = [
    `byol doctor — Node ${r.node}, ${r.platform}, ${r.cores} cores, ${r.memoryGiB.toFixed(0)} GiB`,
    `backend: ${r.backend} — ${r.backendWhy}`,
  ];
  if (r.onednn) {
    lines.push(`oneDNN ${r.onednn.version}, ${r.onednn.threads} threads; convolutions: fp32 ${r.onednn.fp32 || 'none'}, bf16 ${r.onednn.bf16 || 'none'}`);
  }
  lines.push(`native build log: ${r.buildLog ? `${r.buildLog.path} (${r.buildLog.last || 'empty'})` : `none (${BUILD_LOG} appears after an install that builds it)`}`);
  for (const [what, ips] of Object.entries(r.speed)) lines.push(`speed: ${what}: ${ips === null ? 'not measured' : `${ips.toFixed(1)} images/s`}`);
  if (r.bf16Speedup !== null) lines.push(`bf16: ${r.bf16Speedup.toFixed(2)}× fp32 on the ConvNet step${r.bf16Speedup >= 1.05 ? ' — add --precision bf16 to train faster' : ' — not faster here'}`);
  for (const e of r.estimates) lines.push(`estimate: ${e}`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines;
}
