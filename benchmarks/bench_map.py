"""The catalogue map: is the layout readable, and is the page responsive at 100k tracks?

Two parts (run by hand; results in the README's "The catalogue map" section):

``--quality --model demo/model``
    For each space of a built model, t-SNE against PCA: the share of each track's 10
    nearest tracks (cosine, in the model's own vectors) that are also among its 10
    nearest on the map, and the share of its 10 nearest on the map that have its style
    (the catalogue's ``style`` column, when it has one). Plus each method's time.

``--frames --tracks 100000``
    Builds a content-only model of that many tracks (vectors from 24 clusters, one
    "style" each; layout time is reported), serves it, opens the page in headless
    Chromium (``/usr/bin/chromium``, software rendering) and measures in the page:
    loading the map (fetch, decode, hover grid), one full draw with the whole map in
    view and zoomed in, the frame interval while zooming by wheel events (one per
    animation frame), and one hover lookup.

``OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_map.py --frames``
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def knn(points: np.ndarray, k: int, *, cosine: bool) -> np.ndarray:
    """Each row's ``k`` nearest other rows (exact, in chunks)."""
    x = points.astype(np.float64)
    if cosine:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(x), k), dtype=np.int64)
    sq = (x**2).sum(axis=1)
    for start in range(0, len(x), 2048):
        block = x[start : start + 2048]
        d = -block @ x.T if cosine else sq[start : start + 2048, None] - 2 * block @ x.T + sq
        d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        out[start : start + len(block)] = np.argpartition(d, k, axis=1)[:, :k]
    return out


def quality(model: Path, k: int = 10) -> None:
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.layout import layout_2d

    rec = Recommender(model)
    catalog = rec.catalog.frame.set_index("track_id")
    print(f"| space | tracks | method | {k}-NN kept | same style among map {k}-NN | "
          "seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    spaces = {"content": (np.flatnonzero(rec.has_content), rec.content),
              "cf": (np.flatnonzero(np.asarray(rec.evidence) > 0), rec.unit_items)}
    for space, (rows, vectors) in spaces.items():
        x = np.asarray(vectors[rows], dtype=np.float32)
        if len(x) <= k:
            continue
        truth = knn(x, k, cosine=True)
        ids = rec.tracks.ids[rows].astype(str)
        style = (catalog["style"].reindex(ids).to_numpy() if "style" in catalog.columns
                 else None)
        for method in ("tsne", "pca"):
            t0 = time.perf_counter()
            xy, used = layout_2d(x, method=method)
            seconds = time.perf_counter() - t0
            near = knn(xy, k, cosine=False)
            kept = np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, near,
                                                                      strict=True)])
            same = "n/a" if style is None else f"{np.mean(style[near] == style[:, None]):.3f}"
            print(f"| {space} | {len(x)} | {used} | {kept:.3f} | {same} | {seconds:.1f} |")


@contextlib.contextmanager
def serve(model: Path) -> Iterator[str]:
    from werkzeug.serving import make_server

    from musicrec.api import create_app

    httpd = make_server("127.0.0.1", 0, create_app({"MODEL_DIR": model}), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join()


def synthetic_model(folder: Path, n: int, seed: int = 0) -> Path:
    from musicrec.data.catalog import TrackCatalog
    from musicrec.recommender.pipeline import build_model_dir

    rng = np.random.default_rng(seed)
    dim, k = 32, 24
    centres = rng.standard_normal((k, dim)).astype(np.float32) * 2
    label = rng.integers(0, k, n)
    vectors = (centres[label] + rng.standard_normal((n, dim))).astype(np.float32)
    ids = [f"t{i:06d}" for i in range(n)]
    catalog = TrackCatalog(pd.DataFrame({
        "track_id": ids, "title": [f"Track {i}" for i in range(n)],
        "artist": [f"artist {i % 5000}" for i in range(n)],
        "style": [f"style {c:02d}" for c in label]}))
    t0 = time.perf_counter()
    out = build_model_dir(folder / "model", catalog=catalog, content_ids=ids,
                          content=vectors, index="hnsw")
    print(f"built a content-only model of {n} tracks in {time.perf_counter() - t0:.0f} s")
    return out


FRAMES_JS = """async () => {
  const m = window.musicrecMap;
  const median = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const p95 = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length * 0.95)];
  const t0 = performance.now();
  const body = await (await fetch('/v1/map?space=content')).json();
  const t1 = performance.now();
  m.load(body);
  const t2 = performance.now();
  const drawn = (k) => { const out = []; for (let i = 0; i < k; i++) {
      const s = performance.now(); m.draw(); out.push(performance.now() - s); } return out; };
  m.reset(); const whole = drawn(30);
  const w = m.canvas.clientWidth, h = m.canvas.clientHeight;
  m.zoomAt(w / 2, h / 2, 16); const zoomed = drawn(30);
  m.reset(); m.draw();
  // wheel-zoom in and out, one wheel event per animation frame: the frame interval
  const stamps = [];
  await new Promise((done) => {
    let i = 0;
    const step = (t) => {
      stamps.push(t);
      if (i++ >= 120) return done();
      m.canvas.dispatchEvent(new WheelEvent('wheel', { deltaY: i <= 60 ? -60 : 60,
        clientX: m.canvas.getBoundingClientRect().left + w / 2,
        clientY: m.canvas.getBoundingClientRect().top + h / 2, cancelable: true }));
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
  const intervals = stamps.slice(1).map((t, i) => t - stamps[i]);
  const hs = performance.now();
  for (let i = 0; i < 1000; i++) m.pointAt(Math.random() * w, Math.random() * h);
  const hover = (performance.now() - hs) / 1000;
  return { n: body.n, fetch: t1 - t0, load: t2 - t1, whole: [median(whole), p95(whole)],
           zoomed: [median(zoomed), p95(zoomed)],
           frame: [median(intervals), p95(intervals)], hover,
           size: [m.width, m.height] };
}"""


def frames(n: int, chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        model = synthetic_model(Path(tmp), n)
        with serve(model) as base:
            import urllib.request

            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{base}/v1/map", timeout=600) as r:  # noqa: S310
                size = len(r.read())
            print(f"GET /v1/map: {size / 1e6:.1f} MB of JSON, first request (encoding) "
                  f"{time.perf_counter() - t0:.2f} s")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(base + "/")
                page.wait_for_selector("#map-section[data-loaded=content]", timeout=120_000)
                result: dict[str, Any] = page.evaluate(FRAMES_JS)
                browser.close()
    print(f"{result['n']} points on a {result['size'][0]}x{result['size'][1]} canvas "
          "(headless Chromium, software rendering)")
    print(f"fetch {result['fetch']:.0f} ms, decode + hover grid {result['load']:.0f} ms")
    for name in ("whole", "zoomed", "frame"):
        med, p95 = result[name]
        print(f"{name:>7}: median {med:.1f} ms, p95 {p95:.1f} ms")
    print(f"  hover: {1000 * result['hover']:.0f} us per lookup")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--model", type=Path, default=Path("demo/model"))
    parser.add_argument("--frames", action="store_true")
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not (args.quality or args.frames):
        parser.error("choose --quality, --frames or both")
    if args.quality:
        quality(args.model)
    if args.frames:
        frames(args.tracks, args.chromium)


if __name__ == "__main__":
    main()
