"""Load benchmark of ``musicrec serve`` on 127.0.0.1 with wrk, against a bare Flask app.

Builds a synthetic hybrid model of 1,000 tracks and 2,000 users (or serves ``--model``),
starts ``musicrec serve`` (gunicorn), then runs wrk against similar tracks and user
recommendations, each with a random id per request. The reference runs in the same run,
on the same gunicorn settings: a bare Flask app whose one route returns ten precomputed
items of the same shape, so the ratio says what musicrec's own work costs. Each round
measures the reference and both endpoints; one JSON line per measurement, then a summary
line per endpoint with its throughput as a share of the reference's in the same round.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_api.py [--seconds 20] \
        [--connections 4] [--rounds 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LUA = """
math.randomseed(%(seed)d)
local ids = {%(ids)s}
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("%(method)s", string.format("%(template)s", id), %(headers)s, %(body)s)
end
"""


def build(out: Path, n_tracks: int = 1000, n_users: int = 2000) -> Path:
    from musicrec.data.catalog import TrackCatalog
    from musicrec.data.logs import ListeningLog
    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.pipeline import build_model_dir

    rng = np.random.default_rng(0)
    ids = [f"t{t:04d}" for t in range(n_tracks)]
    popularity = 1.0 / np.arange(1, n_tracks + 1) ** 0.8
    popularity /= popularity.sum()
    rows = [(f"u{u}", ids[t], int(rng.integers(1, 20))) for u in range(n_users)
            for t in rng.choice(n_tracks, int(rng.integers(10, 60)), replace=False,
                                p=popularity)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    catalog = TrackCatalog(pd.DataFrame({"track_id": ids,
                                         "title": [f"Song {i}" for i in ids],
                                         "artist": [f"artist{k % 150}" for k in range(n_tracks)]}))
    return build_model_dir(out, log=log, catalog=catalog, content_ids=ids,
                           content=rng.standard_normal((n_tracks, 64)).astype(np.float32),
                           cf_model=CFModel(factors=64, iterations=15, random_state=0))


def wrk(url: str, template: str, ids: list[str], seconds: int, connections: int,
        tmp: Path, body: str | None = None) -> dict[str, float]:
    """wrk on ``template % id`` with a random id per request; with ``body`` (a template
    of a JSON body, ``%s`` the id) a POST of that body, else a GET."""
    script = tmp / "random.lua"
    script.write_text(LUA % {
        "seed": 1, "ids": ",".join(f'"{i}"' for i in ids), "template": template,
        "method": "GET" if body is None else "POST",
        "headers": "nil" if body is None else '{["Content-Type"]="application/json"}',
        "body": "nil" if body is None else f"string.format('{body}', id)"})
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True,
                         check=True).stdout
    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
            "p50_ms": ms("50"), "p90_ms": ms("90"), "p99_ms": ms("99"),
            "requests": int(re.search(r"(\d+) requests in", out)[1]),  # type: ignore[index]
            "non_2xx": int(non2xx[1]) if non2xx else 0,
            "socket_errors": errors[1] if errors else None}


def bare_app(items_json: str) -> Any:
    """The reference: Flask answering every request with ten precomputed items."""
    from flask import Flask, jsonify

    app = Flask("bare")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    items = json.loads(items_json)

    @app.get("/v1/tracks/<path:track_id>/similar")
    @app.get("/v1/users/<path:track_id>/recommendations")
    def ten(track_id: str) -> Any:
        return jsonify({"track_id": track_id, "results": items})

    return app


def run_bare(port: int, workers: int, items_file: str) -> None:
    """``musicrec serve`` itself (same gunicorn worker class, threads, preload, keep-alive)
    with :func:`bare_app` in place of the model's app."""
    import musicrec.api
    from musicrec.cli import build_parser

    app = bare_app(Path(items_file).read_text())
    musicrec.api.create_app = lambda config=None: app  # type: ignore[assignment]
    args = build_parser().parse_args(["serve", "--model", "bare", "--port", str(port),
                                      "--workers", str(workers)])
    args.handler(args)


def serve_bare(port: int, workers: int, items: list[dict[str, Any]], tmp: Path
               ) -> subprocess.Popen[bytes]:
    (tmp / "items.json").write_text(json.dumps(items))
    return subprocess.Popen([sys.executable, __file__, "_bare", str(port), str(workers),
                             str(tmp / "items.json")])


def profile(master: int, out: Path, load: Any, seconds: int) -> None:
    """Sample one gunicorn worker with py-spy while ``load()`` runs; print where time goes.

    The summary gives, for the functions of the request path, the share of the worker's
    busy samples (idle samples, waiting for a request, excluded) that are inside each.
    """
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    beside = Path(sys.executable).parent / "py-spy"  # installed in the venv
    spy = subprocess.Popen([str(beside) if beside.exists() else "py-spy", "record",
                            "--pid", children[0], "--duration",
                            str(max(seconds - 2, 1)), "--rate", "500", "--nonblocking",
                            "--format", "raw", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load()
    spy.wait(timeout=60)
    inclusive: dict[str, int] = {}
    busy = in_app = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(f.startswith(("accept ", "wait ", "select ")) for f in frames[-2:]):
            continue  # the worker waits for a connection
        busy += int(count)
        names = [f.split(" (")[0] for f in frames]
        if "Flask.wsgi_app" not in names:
            continue
        in_app += int(count)
        for name in set(names[names.index("Flask.wsgi_app"):]):
            inclusive[name] = inclusive.get(name, 0) + int(count)
    print(f"profile of {out.stem}: {busy} busy samples, {100 * in_app / max(busy, 1):.1f}% "
          "in the Flask app (the rest: gunicorn reading and writing sockets); inside the "
          "app:", file=sys.stderr)
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {100 * count / max(in_app, 1):5.1f}%  {name}", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_bare":
        run_bare(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="per endpoint")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", type=Path, help="serve this model instead of building")
    parser.add_argument("--profile", type=Path, help="after the rounds, profile one worker "
                        "per endpoint under the same load with py-spy; collapsed stacks "
                        "go to this folder and a summary to stderr")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        started = time.perf_counter()
        model = args.model or build(tmp / "model")
        print(f"model ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        from musicrec.recommender.facade import Recommender

        rec = Recommender(model)
        tracks = rec.tracks.ids.tolist()
        users = [str(u) for u in rec.cf.users_.ids] if rec.cf is not None else []
        port, bare_port = free_port(), free_port()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        server = subprocess.Popen([sys.executable, "-m", "musicrec", "serve", "--model",
                                   str(model), "--port", str(port), "--workers",
                                   str(args.workers)], env=env)
        base = f"http://127.0.0.1:{port}"
        bare_base = f"http://127.0.0.1:{bare_port}"
        bare = None
        try:
            wait_ready(base + "/readyz")
            with urllib.request.urlopen(f"{base}/v1/tracks/{tracks[0]}/similar?n=10") as r:
                items = json.loads(r.read())["results"]  # the same ten items, precomputed
            bare = serve_bare(bare_port, args.workers, items, tmp)
            wait_ready(f"{bare_base}/v1/tracks/{tracks[0]}/similar")
            endpoints: list[tuple[str, str, str, list[str], str | None]] = [
                ("bare_flask", bare_base, "/v1/tracks/%s/similar?n=10", tracks, None),
                ("similar", base, "/v1/tracks/%s/similar?n=10&alpha=0.5&max_per_artist=3",
                 tracks, None),
                ("user_recommendations", base,
                 "/v1/users/%s/recommendations?n=10&exclude_played=true", users, None),
                ("listener_recommendations", base, "/v1/recommendations", tracks,
                 '{"tracks": ["%s"], "plays": [3], "n": 10}'),
                ("user_history", base, "/v1/users/%s/history?n=10", users, None),
                ("search_tracks", base, "/v1/tracks?q=%s&offset=0&limit=10", tracks, None)]
            ratios: dict[str, list[float]] = {}
            p99: dict[str, list[float]] = {}
            for round_ in range(args.rounds):
                reference = 0.0
                for label, url, template, ids, body in endpoints:
                    wrk(url + "/", template, ids, 2, args.connections, tmp, body)  # warm-up
                    result = wrk(url + "/", template, ids, args.seconds, args.connections, tmp,
                                 body)
                    if label == "bare_flask":
                        reference = result["requests_per_s"]
                    else:
                        ratios.setdefault(label, []).append(result["requests_per_s"] / reference)
                        p99.setdefault(label, []).append(result["p99_ms"])
                    print(json.dumps({"round": round_ + 1, "endpoint": label,
                                      "tracks": len(tracks), "workers": args.workers,
                                      "connections": args.connections,
                                      "seconds": args.seconds, **result}), flush=True)
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for label, url, template, ids, body in endpoints[1:]:
                    profile(server.pid, args.profile / f"{label}.txt",
                            lambda u=url, t=template, i=ids, b=body: wrk(
                                u + "/", t, i, args.seconds, args.connections, tmp, b),
                            args.seconds)
            for label, values in ratios.items():
                print(json.dumps({"summary": label, "share_of_bare_flask": [
                    round(v, 3) for v in values], "p99_ms": p99[label]}))
        finally:
            for process in (server, bare):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)


if __name__ == "__main__":
    main()
