import type { StepResult } from '../byol/learner.js';
import type { Diagnostics } from '../run/pretrain.js';
import type { Io } from './commands.js';

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/**
 * Training progress: on a terminal one line redrawn in place (bar, epoch, step, images/s, ETA, loss, τ, lr,
 * collapse metric); elsewhere (logs, CI) the same line printed every `logEvery` steps and at each epoch's end.
 */
export class Progress {
  private live = false;
  constructor(private readonly io: Io, private readonly logEvery: number) {}

  step(r: StepResult, info: { epoch: number; totalSteps: number; stepsPerEpoch: number; imagesPerSecond: number; etaSeconds: number; diagnostics?: Diagnostics | null }): void {
    const epochs = info.totalSteps / info.stepsPerEpoch;
    const frac = r.step / info.totalSteps;
    const bar = `[${'#'.repeat(Math.round(frac * 20)).padEnd(20, '.')}]`;
    const line =
      `epoch ${info.epoch + 1}/${epochs} ${bar} step ${r.step}/${info.totalSteps}  ${info.imagesPerSecond.toFixed(1)} img/s  ETA ${duration(info.etaSeconds)}  ` +
      `loss ${r.loss.toFixed(4)}  τ ${r.tau.toFixed(4)}  lr ${r.learningRate.toPrecision(3)}  collapse ${r.collapse.toFixed(4)}` +
      (info.diagnostics ? `  rank ${info.diagnostics.featureRank.toFixed(1)}/${Math.min(info.diagnostics.batch, info.diagnostics.featureDim)}` : '');
    if (this.io.isTTY) {
      process.stdout.write(`\r\x1b[2K${line}`);
      this.live = true;
    } else if (r.step % this.logEvery === 0 || r.step % info.stepsPerEpoch === 0 || r.step === info.totalSteps) {
      this.io.out(line);
    }
  }

  message(line: string): void {
    this.end();
    this.io.out(line);
  }

  end(): void {
    if (this.live) process.stdout.write('\n');
    this.live = false;
  }
}
