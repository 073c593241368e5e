"""Load benchmark of ``musicrec serve`` on 127.0.0.1 with wrk: throughput and latency.

Builds a synthetic hybrid model of 1,000 tracks and 2,000 users (the demo dataset takes
too long to render for a bounded benchmark), starts ``musicrec serve`` (gunicorn), then
runs wrk against similar tracks and user recommendations, each with a random id per
request. About 60 s in all. Prints one JSON line per endpoint.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_api.py [--seconds 20]
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

import numpy as np
import pandas as pd

LUA = """
math.randomseed(%(seed)d)
local ids = {%(ids)s}
request = function()
  return wrk.format("GET", string.format("%(template)s", ids[math.random(#ids)]))
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
        tmp: Path) -> dict[str, float]:
    script = tmp / "random.lua"
    script.write_text(LUA % {"seed": 1, "ids": ",".join(f'"{i}"' for i in ids),
                             "template": template})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="per endpoint")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--model", type=Path, help="serve this model instead of building")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        started = time.perf_counter()
        model = args.model or build(tmp / "model")
        print(f"model ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        server = subprocess.Popen([sys.executable, "-m", "musicrec", "serve", "--model",
                                   str(model), "--port", str(port), "--workers",
                                   str(args.workers)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                        ready = json.loads(response.read())
                    break
                except OSError:
                    time.sleep(0.1)
            from musicrec.recommender.facade import Recommender

            rec = Recommender(model)
            tracks = rec.tracks.ids.tolist()
            users = [str(u) for u in rec.cf.users_.ids] if rec.cf is not None else []
            for label, template, ids in (
                    ("similar", "/v1/tracks/%s/similar?n=10", tracks),
                    ("user_recommendations", "/v1/users/%s/recommendations?n=10", users)):
                wrk(base + "/", template, ids, 2, args.connections, tmp)  # warm-up
                result = wrk(base + "/", template, ids, args.seconds, args.connections, tmp)
                print(json.dumps({"endpoint": label, "tracks": ready["tracks"],
                                  "workers": args.workers, "connections": args.connections,
                                  "seconds": args.seconds, **result}))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
