/** Small canvas charts for the page: a line plot against step and a scatter map with hit testing. */

export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** Rounds a span to 1, 2 or 5 × 10ᵏ for ticks. */
function niceStep(span: number, ticks: number): number {
  const raw = span / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

const label = (v: number) => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(4)));

/** Draws y against x (both finite arrays of equal length) with axes, ticks and a title. */
export function linePlot(canvas: HTMLCanvasElement, xs: readonly number[], ys: readonly number[], title: string, color = PALETTE[0]!): void {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#222';
  ctx.fillText(title, 48, 12);
  const pts = xs.map((x, i) => [x, ys[i]!] as const).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length === 0) return;
  const [left, right, top, bottom] = [48, w - 8, 18, h - 18];
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.01, y1 + Math.abs(y1 || 1) * 0.01];
  const px = (x: number) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const py = (y: number) => bottom - ((y - y0) / (y1 - y0)) * (bottom - top);
  ctx.strokeStyle = '#999';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, top);
  ctx.lineTo(left, bottom);
  ctx.lineTo(right, bottom);
  ctx.stroke();
  ctx.fillStyle = '#555';
  const ys_ = niceStep(y1 - y0, 4);
  for (let t = Math.ceil(y0 / ys_) * ys_; t <= y1 + ys_ * 1e-9; t += ys_) {
    ctx.fillText(label(t), 2, py(t) + 3);
    ctx.fillRect(left - 3, py(t), 3, 1);
  }
  const xs_ = niceStep(x1 - x0, 5);
  for (let t = Math.ceil(x0 / xs_) * xs_; t <= x1 + xs_ * 1e-9; t += xs_) {
    const text = label(t);
    const tw = ctx.measureText(text).width;
    ctx.fillText(text, Math.min(px(t) - tw / 2, w - tw - 1), h - 4); // the last label stays inside the canvas
  }
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(px(x), py(y)) : ctx.lineTo(px(x), py(y))));
  ctx.stroke();
}

export interface ScatterMap {
  /** The point nearest to a canvas position (CSS pixels), if one is within 6 px. */
  pick(x: number, y: number): number | null;
  /** Canvas position (CSS pixels) of point i. */
  position(i: number): [number, number];
}

/** Draws points [x0, y0, x1, y1, …] coloured by label (grey without), one highlighted; returns a picker. */
export function scatter(canvas: HTMLCanvasElement, xy: Float32Array, labels: Int32Array | null, highlight: readonly number[] = []): ScatterMap {
  const ctx = canvas.getContext('2d')!;
  const { width: w, height: h } = canvas;
  const n = xy.length / 2;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < n; i++) {
    x0 = Math.min(x0, xy[2 * i]!);
    x1 = Math.max(x1, xy[2 * i]!);
    y0 = Math.min(y0, xy[2 * i + 1]!);
    y1 = Math.max(y1, xy[2 * i + 1]!);
  }
  if (!(x1 > x0)) [x0, x1] = [x0 - 1, x0 + 1];
  if (!(y1 > y0)) [y0, y1] = [y0 - 1, y0 + 1];
  const pad = 10;
  const pos = (i: number): [number, number] => [pad + ((xy[2 * i]! - x0) / (x1 - x0)) * (w - 2 * pad), h - pad - ((xy[2 * i + 1]! - y0) / (y1 - y0)) * (h - 2 * pad)];
  ctx.clearRect(0, 0, w, h);
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < n; i++) {
    const [x, y] = pos(i);
    ctx.fillStyle = labels ? PALETTE[labels[i]! % PALETTE.length]! : '#555';
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 2;
  for (const i of highlight) {
    const [x, y] = pos(i);
    ctx.strokeRect(x - 4, y - 4, 8, 8);
  }
  const scale = () => canvas.width / (canvas.getBoundingClientRect().width || canvas.width);
  return {
    pick(cx, cy) {
      const s = scale();
      let best: number | null = null;
      let bestD = (6 * s) ** 2;
      for (let i = 0; i < n; i++) {
        const [x, y] = pos(i);
        const d = (x - cx * s) ** 2 + (y - cy * s) ** 2;
        if (d < bestD) [best, bestD] = [i, d];
      }
      return best;
    },
    position(i) {
      const [x, y] = pos(i);
      const s = scale();
      return [x / s, y / s];
    },
  };
}

/** Paints image i of a dataset (uint8 NHWC, 1 or 3 channels) into a canvas of its size (CSS scales it up). */
export function paintImage(canvas: HTMLCanvasElement, pixels: Uint8Array, index: number, size: number, channels: number): void {
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(size, size);
  const at = index * size * size * channels;
  for (let p = 0; p < size * size; p++) {
    const [r, g, b] = channels === 3 ? [pixels[at + 3 * p]!, pixels[at + 3 * p + 1]!, pixels[at + 3 * p + 2]!] : [pixels[at + p]!, pixels[at + p]!, pixels[at + p]!];
    img.data.set([r, g, b, 255], 4 * p);
  }
  ctx.putImageData(img, 0, 0);
}
