"""Load benchmark of ``musicrec serve`` on 127.0.0.1 with wrk, against a bare Flask app.

Builds a synthetic hybrid model of 1,000 tracks and 2,000 users (or serves ``--model``),
starts ``musicrec serve`` (gunicorn), then runs wrk against five endpoints (similar
tracks, user recommendations, a listener's recommendations by POST, a user's history and
the catalogue search), each with a random id per request. The reference runs in the same
run, on the same gunicorn settings: a bare Flask app whose one route returns ten
precomputed items of the same shape, so the ratio says what musicrec's own work costs.
Each round measures the reference and every endpoint; one JSON line per measurement, then
a summary line per endpoint with its throughput as a share of the reference's in the same
round. ``musicrec serve`` keeps known users' recommendations in its answer cache (its
default ``--answer-cache``), so after the warm-up most of the 2,000 users' requests of the
synthetic model are answered from it: a second server with ``--answer-cache 0`` measures
the live path beside it (``user_recommendations@live``).

``--baseline DIR`` serves a second copy of musicrec from another source tree (for example
``git archive main | tar -x -C DIR``) beside this one, on the same model, and measures
each endpoint on the two back to back in every round (in alternating order): on a shared
machine whose load drifts, that pairing is what makes "before" and "after" comparable.
The summary then adds each round's throughput of this code over the baseline's.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_api.py [--seconds 20] \
        [--connections 4] [--rounds 2] [--model DIR] [--baseline DIR] \
        [--in-process N [--clock cpu]]
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


def endpoints_of(tracks: list[str], users: list[str]
                 ) -> list[tuple[str, str, list[str], str | None]]:
    """(label, URL template, ids, JSON body template or None) of each measured endpoint."""
    return [
        ("similar", "/v1/tracks/%s/similar?n=10&alpha=0.5&max_per_artist=3", tracks, None),
        ("user_recommendations", "/v1/users/%s/recommendations?n=10&exclude_played=true",
         users, None),
        ("listener_recommendations", "/v1/recommendations", tracks,
         '{"tracks": ["%s"], "plays": [3], "n": 10}'),
        ("user_history", "/v1/users/%s/history?n=10", users, None),
        ("search_tracks", "/v1/tracks?q=%s&offset=0&limit=10", tracks, None)]


def in_process(model: str, number: int, clock: str = "wall") -> None:
    """(Run in a subprocess.) For each line on stdin, one pass of ``number`` requests per
    endpoint through the app itself (Flask's test client: no sockets, no gunicorn), the
    same random ids every pass; prints one JSON line of microseconds per request by
    endpoint. For the line ``calls``, the pass runs under cProfile and the line gives the
    Python function calls per request instead: a count that no other load can change.
    ``clock="cpu"`` times the passes by this process's CPU time (``time.process_time``),
    which other load on a shared machine moves far less than wall time."""
    import cProfile
    import pstats
    import random

    from musicrec.api import create_app

    app = create_app({"MODEL_DIR": model})
    client = app.test_client()
    rec = app.extensions["musicrec"].current().recommender
    tracks = rec.tracks.ids.tolist()
    users = [str(u) for u in rec.cf.users_.ids] if rec.cf is not None else []
    rng = random.Random(1)
    plan = []
    for label, template, ids, body in endpoints_of(tracks, users):
        picked = [rng.choice(ids) for _ in range(number)]
        plan.append((label, [(template % i, None) if body is None else (template, body % i)
                             for i in picked]))
    now = time.process_time if clock == "cpu" else time.perf_counter
    print("ready", flush=True)
    for command in sys.stdin:
        times = {}
        for label, calls in plan:
            profiler = cProfile.Profile() if command == "calls\n" else None
            started = now()
            if profiler is not None:
                profiler.enable()
            for url, data in calls:
                response = (client.get(url) if data is None else
                            client.post(url, data=data, content_type="application/json"))
                assert response.status_code == 200, (url, response.get_data()[:200])
            if profiler is not None:
                profiler.disable()
                times[label] = round(pstats.Stats(profiler).total_calls / number, 1)
            else:
                times[label] = round((now() - started) / number * 1e6, 1)
        print(json.dumps(times), flush=True)


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
        if not count.isdigit():  # a frame name read mid-update (--nonblocking) broke the line
            continue
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


def link_tree(source: Path, out: Path) -> Path:
    """A folder to put on ``PYTHONPATH`` that imports ``musicrec`` from the source tree
    ``source`` (its packages sit at the top and install as ``musicrec.<name>``, as the
    Makefile's typecheck tree does); it takes precedence over the editable install."""
    package = out / "musicrec"
    package.mkdir(parents=True)
    for path in (source / "musicrec").iterdir():
        (package / path.name).symlink_to(path.resolve())
    for name in ("data", "embedding", "recommender", "api"):
        (package / name).symlink_to((source / name).resolve())
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and its live descendants
    (a gunicorn master and its workers)."""
    total, todo = 0, [pid]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


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


def compare_in_process(model: Path, args: argparse.Namespace, tmp: Path) -> None:
    """``--in-process N``: one process of this code and, with ``--baseline``, one of the
    baseline's, each running :func:`in_process`; ``--rounds`` passes, alternating between
    the two pass by pass. The summary gives each endpoint's best and median pass, the
    baseline's median time over this code's (a throughput ratio), and the Python function
    calls per request of one more pass under cProfile."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    codes = {"": env}
    if args.baseline is not None:
        codes["baseline"] = {**env, "PYTHONPATH": str(link_tree(args.baseline,
                                                                 tmp / "baseline"))}
    workers = {code: subprocess.Popen([sys.executable, __file__, "_in_process", str(model),
                                       str(args.in_process), args.clock], env=code_env, cwd=tmp,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
               for code, code_env in codes.items()}
    passes: dict[str, list[float]] = {}
    try:
        for worker in workers.values():
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for round_ in range(args.rounds):
            for code, worker in list(workers.items())[::1 if round_ % 2 == 0 else -1]:
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
                times = json.loads(worker.stdout.readline())
                print(json.dumps({"round": round_ + 1, "code": code or "this", **times}),
                      flush=True)
                for endpoint, value in times.items():
                    passes.setdefault(endpoint + (f"@{code}" if code else ""), []).append(value)
        calls: dict[str, dict[str, float]] = {}
        for code, worker in workers.items():
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write("calls\n")
            worker.stdin.flush()
            calls[code] = json.loads(worker.stdout.readline())
    finally:
        for worker in workers.values():
            worker.kill()
            worker.wait()
    for label, values in passes.items():
        if label.endswith("@baseline"):
            continue
        line: dict[str, Any] = {"summary": label, "best_us": min(values),
                                "median_us": float(np.median(values)),
                                "python_calls": calls[""][label]}
        if f"{label}@baseline" in passes:
            other = passes[f"{label}@baseline"]
            line.update(baseline_best_us=min(other), baseline_median_us=float(np.median(other)),
                        baseline_python_calls=calls["baseline"][label],
                        median_throughput_vs_baseline=round(float(
                            np.median(other) / np.median(values)), 3))
        print(json.dumps(line))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_bare":
        run_bare(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "_in_process":
        in_process(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="per endpoint")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", type=Path, help="serve this model instead of building")
    parser.add_argument("--baseline", type=Path, help="a source tree of musicrec to serve "
                        "and measure beside this one (e.g. main before a change)")
    parser.add_argument("--in-process", type=int, metavar="N", help="instead of wrk: time "
                        "passes of N requests per endpoint through the app itself, one "
                        "pass per round, alternating with --baseline's; best pass")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="--in-process: time passes by wall time or by CPU time")
    parser.add_argument("--profile", type=Path, help="after the rounds, profile one worker "
                        "per endpoint under the same load with py-spy; collapsed stacks "
                        "go to this folder and a summary to stderr")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.in_process:
        sys.exit("wrk is missing: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        started = time.perf_counter()
        model = args.model or build(tmp / "model")
        print(f"model ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if args.in_process:
            compare_in_process(model, args, tmp)
            return
        from musicrec.recommender.facade import Recommender

        rec = Recommender(model)
        tracks = rec.tracks.ids.tolist()
        users = [str(u) for u in rec.cf.users_.ids] if rec.cf is not None else []
        port, bare_port, baseline_port = free_port(), free_port(), free_port()
        live_port = free_port()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        serve = [sys.executable, "-m", "musicrec", "serve", "--model", str(model),
                 "--workers", str(args.workers), "--port"]
        server = subprocess.Popen([*serve, str(port)], env=env)
        # the same code without the answer cache: known users' recommendations computed
        # live on every request (measured as user_recommendations@live)
        live = subprocess.Popen([*serve, str(live_port), "--answer-cache", "0"], env=env)
        base = f"http://127.0.0.1:{port}"
        bare_base = f"http://127.0.0.1:{bare_port}"
        bare = baseline = None
        codes = {"": (base, server), "live": (f"http://127.0.0.1:{live_port}", live)}
        if args.baseline is not None:
            tree = link_tree(args.baseline, tmp / "baseline")
            baseline = subprocess.Popen([*serve, str(baseline_port)], cwd=tmp,
                                        env={**env, "PYTHONPATH": str(tree)})
            codes["baseline"] = (f"http://127.0.0.1:{baseline_port}", baseline)
        try:
            for url, _ in codes.values():
                wait_ready(url + "/readyz")
            with urllib.request.urlopen(f"{base}/v1/tracks/{tracks[0]}/similar?n=10") as r:
                items = json.loads(r.read())["results"]  # the same ten items, precomputed
            bare = serve_bare(bare_port, args.workers, items, tmp)
            wait_ready(f"{bare_base}/v1/tracks/{tracks[0]}/similar")
            endpoints = endpoints_of(tracks, users)
            ratios: dict[str, list[float]] = {}
            p99: dict[str, list[float]] = {}
            rps: dict[str, list[float]] = {}
            cpu: dict[str, list[float]] = {}

            def measure(round_: int, label: str, url: str, process: subprocess.Popen[bytes],
                        template: str, ids: list[str], body: str | None) -> dict[str, float]:
                wrk(url + "/", template, ids, 2, args.connections, tmp, body)  # warm-up
                used = cpu_seconds(process.pid)
                result = wrk(url + "/", template, ids, args.seconds, args.connections, tmp,
                             body)
                # CPU time of the server's processes per request: unlike throughput, it
                # hardly moves with the other load on a shared machine
                result["cpu_us_per_request"] = round(
                    (cpu_seconds(process.pid) - used) / max(result["requests"], 1) * 1e6, 1)
                print(json.dumps({"round": round_ + 1, "endpoint": label,
                                  "tracks": len(tracks), "workers": args.workers,
                                  "connections": args.connections,
                                  "seconds": args.seconds, **result}), flush=True)
                return result

            for round_ in range(args.rounds):
                reference = measure(round_, "bare_flask", bare_base, bare,
                                    "/v1/tracks/%s/similar?n=10", tracks, None)
                cpu.setdefault("bare_flask", []).append(reference["cpu_us_per_request"])
                order = list(codes.items())[::1 if round_ % 2 == 0 else -1]
                for endpoint, template, ids, body in endpoints:
                    for code, (url, process) in order:
                        if code == "live" and endpoint != "user_recommendations":
                            continue  # the cache serves only known users' recommendations
                        label = f"{endpoint}@{code}" if code else endpoint
                        result = measure(round_, label, url, process, template, ids, body)
                        cpu.setdefault(label, []).append(result["cpu_us_per_request"])
                        ratios.setdefault(label, []).append(
                            result["requests_per_s"] / reference["requests_per_s"])
                        p99.setdefault(label, []).append(result["p99_ms"])
                        rps.setdefault(label, []).append(result["requests_per_s"])
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for label, template, ids, body in endpoints:
                    for code, (url, process) in codes.items():
                        if code == "baseline" or (code == "live"
                                                  and label != "user_recommendations"):
                            continue
                        name = f"{label}@{code}" if code else label
                        profile(process.pid, args.profile / f"{name}.txt",
                                lambda t=template, i=ids, b=body, u=url: wrk(
                                    u + "/", t, i, args.seconds, args.connections, tmp, b),
                                args.seconds)
            if not args.rounds:  # --rounds 0 --profile: the profiles alone
                return
            print(json.dumps({"summary": "bare_flask", "median_cpu_us_per_request":
                              float(np.median(cpu["bare_flask"]))}))
            for label, values in ratios.items():
                line: dict[str, Any] = {
                    "summary": label, "share_of_bare_flask": [round(v, 3) for v in values],
                    "p99_ms": p99[label], "best_requests_per_s": max(rps[label]),
                    "best_p99_ms": min(p99[label]),
                    "median_cpu_us_per_request": float(np.median(cpu[label]))}
                if f"{label}@baseline" in rps:
                    other = f"{label}@baseline"
                    line["vs_baseline"] = {
                        "requests_per_s": [round(a / b, 3) for a, b in zip(
                            rps[label], rps[other], strict=True)],
                        "best_requests_per_s": round(max(rps[label]) / max(rps[other]), 3),
                        "median_cpu_per_request": round(float(
                            np.median(cpu[label]) / np.median(cpu[other])), 3)}
                print(json.dumps(line))
        finally:
            for process in (server, live, baseline, bare):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)


if __name__ == "__main__":
    main()
