// The catalogue map: a zoomable, pannable canvas scatter of GET /v1/map (no library).
// Points are written straight into an ImageData (a few ms for 100k points); the tracks
// to highlight (a user's history and recommendations, similar tracks) are drawn on top.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a", "#9a9a9a"];
const MARKS = {  // highlight -> stroke colour, radius (CSS px), legend text
  history: ["#000000", 6, "played by the user"],
  recs: ["#e0a000", 6, "recommended"],
  similar: ["#0a8f3c", 5, "similar tracks"],
  current: ["#d00000", 9, "selected"],
};

function decodeBase64(text, Type) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Type(bytes.buffer);
}

function rgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

class CatalogueMap {
  constructor(canvas, tooltip, { onPick } = {}) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.onPick = onPick || (() => {});
    this.ctx = canvas.getContext("2d");
    this.data = null;
    this.view = { cx: 0.5, cy: 0.5, k: 1 };
    this.marks = { history: [], recs: [], similar: [], current: [] };
    this.drawTimes = [];  // ms per draw, the latest last (read by benchmarks/bench_map.py)
    this.pending = false;
    this.hover = -1;
    this.bindEvents();
  }

  // -- data ----------------------------------------------------------------------------
  load(body) {
    const raw = decodeBase64(body.xy, Uint16Array);
    const n = body.n;
    this.x = new Float32Array(n);
    this.y = new Float32Array(n);
    for (let i = 0; i < n; i++) { this.x[i] = raw[2 * i] / 65535; this.y[i] = raw[2 * i + 1] / 65535; }
    this.group = decodeBase64(body.group, Uint8Array);
    this.data = body;
    this.index = new Map(body.track_ids.map((id, i) => [id, i]));
    // packed colours, one per group (ABGR: ImageData's byte order on little-endian hosts)
    this.colours = body.groups.map((_, g) => {
      const [r, gg, b] = rgb(PALETTE[Math.min(g, PALETTE.length - 1)]);
      return (255 << 24) | (b << 16) | (gg << 8) | r;
    });
    this.buildGrid();
    this.view = { cx: 0.5, cy: 0.5, k: 1 };
    this.resize();
  }

  // a uniform grid of the unit square: point ids sorted by cell, for hover and click
  buildGrid() {
    const n = this.data.n;
    const g = this.gridSize = Math.max(8, Math.min(512, Math.round(Math.sqrt(n / 4))));
    const cellOf = new Uint32Array(n);
    const start = new Uint32Array(g * g + 1);
    for (let i = 0; i < n; i++) {
      const c = Math.min(g - 1, Math.floor(this.y[i] * g)) * g + Math.min(g - 1, Math.floor(this.x[i] * g));
      cellOf[i] = c;
      start[c + 1]++;
    }
    for (let c = 0; c < g * g; c++) start[c + 1] += start[c];
    const fill = start.slice(0, g * g);
    const ids = new Uint32Array(n);
    for (let i = 0; i < n; i++) ids[fill[cellOf[i]]++] = i;
    this.gridStart = start;
    this.gridIds = ids;
  }

  // -- geometry ------------------------------------------------------------------------
  resize() {
    const ratio = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    this.width = Math.max(1, Math.round(rect.width * ratio));
    this.height = Math.max(1, Math.round(rect.height * ratio));
    this.canvas.width = this.width;
    this.canvas.height = this.height;
    this.ratio = ratio;
    this.image = this.ctx.createImageData(this.width, this.height);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.request();
  }

  scale() { return 0.94 * Math.min(this.width, this.height) * this.view.k; }

  // device pixels of a point
  toScreen(i) {
    const s = this.scale();
    return [(this.x[i] - this.view.cx) * s + this.width / 2,
            (this.y[i] - this.view.cy) * s + this.height / 2];
  }

  // CSS pixels, relative to the canvas, of a track (or null when it is not on the map)
  screenOf(trackId) {
    const i = this.index ? this.index.get(trackId) : undefined;
    if (i === undefined) return null;
    const [sx, sy] = this.toScreen(i);
    return [sx / this.ratio, sy / this.ratio];
  }

  // the point nearest to a CSS-pixel position, within `radius` CSS px, or -1
  pointAt(px, py, radius = 8) {
    if (!this.data) return -1;
    const s = this.scale();
    const dx = (px * this.ratio - this.width / 2) / s + this.view.cx;
    const dy = (py * this.ratio - this.height / 2) / s + this.view.cy;
    const r = (radius * this.ratio) / s;
    const g = this.gridSize;
    const c0 = Math.max(0, Math.floor((dx - r) * g)), c1 = Math.min(g - 1, Math.floor((dx + r) * g));
    const r0 = Math.max(0, Math.floor((dy - r) * g)), r1 = Math.min(g - 1, Math.floor((dy + r) * g));
    let best = -1, bestD = r * r;
    for (let row = r0; row <= r1; row++) {
      for (let col = c0; col <= c1; col++) {
        const cell = row * g + col;
        for (let k = this.gridStart[cell]; k < this.gridStart[cell + 1]; k++) {
          const i = this.gridIds[k];
          const d = (this.x[i] - dx) ** 2 + (this.y[i] - dy) ** 2;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  // -- view ----------------------------------------------------------------------------
  zoomAt(px, py, factor) {  // keep the point under (px, py) CSS px in place
    const k = Math.max(1, Math.min(4000, this.view.k * factor));
    const s0 = this.scale();
    const ax = (px * this.ratio - this.width / 2) / s0 + this.view.cx;
    const ay = (py * this.ratio - this.height / 2) / s0 + this.view.cy;
    this.view.k = k;
    const s1 = this.scale();
    this.view.cx = ax - (px * this.ratio - this.width / 2) / s1;
    this.view.cy = ay - (py * this.ratio - this.height / 2) / s1;
    this.request();
  }

  panBy(dxCss, dyCss) {
    const s = this.scale();
    this.view.cx -= (dxCss * this.ratio) / s;
    this.view.cy -= (dyCss * this.ratio) / s;
    this.request();
  }

  reset() { this.view = { cx: 0.5, cy: 0.5, k: 1 }; this.request(); }

  centreOn(i, k) {
    this.view.cx = this.x[i];
    this.view.cy = this.y[i];
    if (k) this.view.k = Math.max(this.view.k, k);
    this.request();
  }

  setMarks(name, trackIds) { this.marks[name] = trackIds; this.request(); }

  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  // -- drawing -------------------------------------------------------------------------
  draw() {
    const t0 = performance.now();
    const { width: w, height: h, pixels } = this;
    pixels.fill(0xfffbfbfb);
    if (this.data) {
      const s = this.scale();
      const ox = w / 2 - this.view.cx * s, oy = h / 2 - this.view.cy * s;
      // dots: bigger on small maps, growing as one zooms in (2 px at 100k tracks, whole)
      const n = this.data.n;
      const base = n < 2000 ? 6 : n < 20000 ? 3 : 2;
      const size = Math.min(base + 4, base + Math.floor(Math.log2(this.view.k))) *
                   Math.max(1, Math.round(this.ratio / 1.5));
      const half = size >> 1;
      const { x, y, group, colours } = this;
      for (let i = 0, n = this.data.n; i < n; i++) {
        const px = Math.round(x[i] * s + ox) - half, py = Math.round(y[i] * s + oy) - half;
        if (px < 0 || py < 0 || px + size > w || py + size > h) continue;
        const colour = colours[group[i]];
        for (let dy = 0; dy < size; dy++) {
          const row = (py + dy) * w + px;
          for (let dx = 0; dx < size; dx++) pixels[row + dx] = colour;
        }
      }
    }
    this.ctx.putImageData(this.image, 0, 0);
    if (this.data) this.drawMarks();
    this.drawTimes.push(performance.now() - t0);
    if (this.drawTimes.length > 1000) this.drawTimes.shift();
  }

  drawMarks() {
    const ctx = this.ctx;
    ctx.lineWidth = 2 * this.ratio;
    for (const [name, [colour, radius]] of Object.entries(MARKS)) {
      ctx.strokeStyle = colour;
      ctx.beginPath();
      for (const id of this.marks[name]) {
        const i = this.index.get(id);
        if (i === undefined) continue;
        const [sx, sy] = this.toScreen(i);
        ctx.moveTo(sx + radius * this.ratio, sy);
        ctx.arc(sx, sy, radius * this.ratio, 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
    if (this.hover >= 0) {
      const [sx, sy] = this.toScreen(this.hover);
      ctx.fillStyle = "#000";
      ctx.beginPath();
      ctx.arc(sx, sy, 4 * this.ratio, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  // -- interaction ---------------------------------------------------------------------
  bindEvents() {
    const c = this.canvas;
    let drag = null;
    const local = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [px, py] = local(e);
      this.zoomAt(px, py, Math.exp(-e.deltaY * 0.0015));
    }, { passive: false });
    c.addEventListener("pointerdown", (e) => {
      drag = { at: local(e), moved: 0 };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener("pointermove", (e) => {
      const [px, py] = local(e);
      if (drag) {
        const [dx, dy] = [px - drag.at[0], py - drag.at[1]];
        drag.moved += Math.abs(dx) + Math.abs(dy);
        drag.at = [px, py];
        if (drag.moved > 3) { this.panBy(dx, dy); this.showTip(-1); return; }
      }
      this.showTip(this.pointAt(px, py), px, py);
    });
    c.addEventListener("pointerup", (e) => {
      const [px, py] = local(e);
      const click = drag && drag.moved <= 3;
      drag = null;
      if (!click) return;
      const i = this.pointAt(px, py);
      if (i >= 0) this.onPick(this.data.track_ids[i], this.data.labels[i]);
    });
    c.addEventListener("pointerleave", () => this.showTip(-1));
    window.addEventListener("resize", () => { if (this.data) this.resize(); });
  }

  showTip(i, px, py) {
    if (i !== this.hover) { this.hover = i; this.request(); }
    if (i < 0) { this.tooltip.hidden = true; return; }
    this.tooltip.textContent = this.data.labels[i];
    this.tooltip.dataset.trackId = this.data.track_ids[i];
    this.tooltip.hidden = false;
    // beside the pointer, flipped to its left near the canvas's right edge
    const width = this.tooltip.offsetWidth;
    const left = px + 12 + width > this.canvas.clientWidth ? Math.max(0, px - 12 - width) : px + 12;
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${py + 12}px`;
  }

  legend() {
    const items = this.data.groups.map((name, g) => [PALETTE[Math.min(g, PALETTE.length - 1)], name, "dot"]);
    for (const [colour, , text] of Object.values(MARKS)) items.push([colour, text, "ring"]);
    return items;
  }
}

window.CatalogueMap = CatalogueMap;
