"""Hostile clients against ``musicrec serve``: latency while 64 slow clients are connected.

Each slow client opens a connection and sends its request headers one byte a second,
reconnecting whenever the server drops it (the slowloris attack). Meanwhile one client
probes ``/healthz``, similar tracks and user recommendations in turn, with a 5-s timeout,
and records each latency (a timeout is a failure). The same run serves the same model
three ways:

* ``sync``: gunicorn's sync workers, musicrec's server before this benchmark existed;
* ``gthread``: gunicorn's stock threaded worker, 4 threads a worker;
* ``musicrec``: ``musicrec serve`` (gthread with whole-request buffering, 4 threads).

Also times query by example on three decode bombs (a many-channel Ogg Vorbis, a FLAC at
655,350 Hz, a WAV declaring 1,000,000,007 Hz): how long until the server refuses, and
the largest resident memory of the serving processes.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hostile.py [--slow 64] [--seconds 30]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from bench_api import build


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(mode: str, model: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    if mode == "musicrec":
        cmd = [sys.executable, "-m", "musicrec", "serve", "--model", str(model), "--port",
               str(port), "--workers", str(workers)]
    else:
        factory = f"musicrec.api:create_app({{'MODEL_DIR': {str(model)!r}}})"
        cmd = [sys.executable, "-m", "gunicorn", "--preload", "-w", str(workers), "-k", mode,
               "--threads", "4" if mode == "gthread" else "1", "-b", f"127.0.0.1:{port}",
               "--log-level", "error", factory]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit(f"{mode}: the server did not start")


def slowloris(port: int, stop: threading.Event) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                for byte in request:
                    if stop.is_set():
                        return
                    s.sendall(bytes([byte]))
                    stop.wait(1.0)
        except OSError:
            stop.wait(0.2)


def probe(port: int, urls: list[str], seconds: float) -> dict[str, dict[str, Any]]:
    latencies: dict[str, list[float]] = {u.split("?")[0]: [] for u in urls}
    failures = dict.fromkeys(latencies, 0)
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        url = urls[k % len(urls)]
        key = url.split("?")[0]
        k += 1
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=5) as r:
                r.read()
            latencies[key].append(time.perf_counter() - started)
        except (OSError, urllib.error.HTTPError):
            failures[key] += 1
        time.sleep(0.02)
    out = {}
    for key, values in latencies.items():
        ms = np.array(values) * 1000
        out[key] = {"answered": len(values), "failed": failures[key],
                    "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
                    "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}
    return out


def bombs(seconds: float) -> dict[str, bytes]:
    """Small files that declare huge decoded sizes."""
    out = {}
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(48_000 * seconds), 64), dtype=np.float32), 48_000,
             format="OGG", subtype="VORBIS")
    out["ogg_64ch_48k"] = buf.getvalue()
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(655_350 * seconds), 8), dtype=np.float32), 655_350,
             format="FLAC")
    out["flac_8ch_655350hz"] = buf.getvalue()
    buf = io.BytesIO()
    sf.write(buf, np.zeros((16_000, 1), dtype=np.float32), 8000, format="WAV",
             subtype="PCM_16")
    wav = bytearray(buf.getvalue())
    wav[24:28] = (1_000_000_007).to_bytes(4, "little")
    out["wav_1000000007hz"] = bytes(wav)
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MB."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)],
                                                    capture_output=True, text=True
                                                    ).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=64, help="slow clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="probing per mode")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default="sync,gthread,musicrec")
    parser.add_argument("--model", type=Path, help="serve this model instead of building")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        model = args.model or build(Path(name) / "model")
        from musicrec.recommender.facade import Recommender

        rec = Recommender(model)
        track = rec.tracks.ids[0]
        user = str(rec.cf.users_.ids[0]) if rec.cf is not None else None
        urls = ["/healthz", f"/v1/tracks/{track}/similar?n=10"]
        if user is not None:
            urls.append(f"/v1/users/{user}/recommendations?n=10")
        for mode in args.modes.split(","):
            port = _port()
            server = start(mode, model, port, args.workers)
            stop = threading.Event()
            clients = [threading.Thread(target=slowloris, args=(port, stop), daemon=True)
                       for _ in range(args.slow)]
            try:
                for c in clients:
                    c.start()
                time.sleep(3.0)
                result = probe(port, urls, args.seconds)
                print(json.dumps({"mode": mode, "slow_clients": args.slow,
                                  "workers": args.workers, "seconds": args.seconds,
                                  "endpoints": result}), flush=True)
            finally:
                stop.set()
                server.terminate()
                server.wait(timeout=30)
        # decode bombs, served by musicrec
        port = _port()
        server = start("musicrec", model, port, args.workers)
        try:
            before = rss_mb(server.pid)
            for label, data in bombs(5.0).items():
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/similar", data=data, method="POST",
                    headers={"Content-Type": "application/octet-stream"})
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=60) as r:
                        status, body = r.status, r.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                print(json.dumps({"bomb": label, "bytes": len(data), "status": status,
                                  "seconds": round(time.perf_counter() - started, 4),
                                  "message": json.loads(body).get("message"),
                                  "peak_rss_mb_before": round(before, 1),
                                  "peak_rss_mb_after": round(rss_mb(server.pid), 1)}),
                      flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
