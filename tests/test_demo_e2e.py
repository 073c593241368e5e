"""The demo end to end at a tiny size: data, model, evaluation, then a real server."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from musicrec.cli import main
from musicrec.embedding.registry import DEFAULT_MODEL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        return resp.status, resp.read(), dict(resp.headers)


def _json(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    return json.loads(_request(url, data, headers)[1])


@pytest.mark.slow
def test_demo_pipeline_then_every_main_endpoint(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "demo"
    argv = ["demo", "--dir", str(work), "--tracks", "40", "--users", "60", "--no-serve"]
    assert main(argv) == 0
    report = json.loads((work / "report-random-holdout" / "report.json").read_text())
    assert {m["name"] for m in report["models"]} >= {"popularity", "als", "content", "hybrid"}
    assert (work / "report-cold-tracks" / "report.html").exists()
    capsys.readouterr()
    assert main(argv) == 0  # a second run reuses the dataset and the model
    err = capsys.readouterr().err
    assert "reusing the existing dataset" in err and "reusing the existing model" in err
    # the demo's embedder tags every track, so search by words works offline
    manifest = json.loads((work / "model" / "manifest.json").read_text())
    assert manifest["embedder"]["spec"] == DEFAULT_MODEL
    assert main(["search", "--model", str(work / "model"), "calm piano", "-n", "3",
                 "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert not found["weak_match"] and len(found["results"]) == 3
    assert all(r["reason"].startswith("tagged ") for r in found["results"])

    port = _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "musicrec", "serve", "--model",
                             str(work / "model"), "--port", str(port), "--workers", "1",
                             "--subsonic", "--subsonic-users",
                             str(work / "subsonic-users.txt")],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                ready = _json(f"{base}/readyz")
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("musicrec serve did not start")
        assert ready["tracks"] == 40
        assert _json(f"{base}/healthz")
        assert _json(f"{base}/v1/model")["kind"] == "hybrid"
        assert _json(f"{base}/openapi.json")["openapi"].startswith("3.")
        status, page, _ = _request(f"{base}/")
        assert status == 200 and b"<html" in page.lower()

        track = _json(f"{base}/v1/tracks?q=")["results"][0]["track_id"]
        assert _json(f"{base}/v1/tracks/{track}")["track_id"] == track
        similar = _json(f"{base}/v1/tracks/{track}/similar?n=3&alpha=1")
        assert len(similar["results"]) == 3
        user_id = _json(f"{base}/v1/users")["users"][0]
        recs = _json(f"{base}/v1/users/{user_id}/recommendations?n=3")
        assert len(recs["results"]) == 3 and all(r["reason"] for r in recs["results"])
        new = _json(f"{base}/v1/recommendations", {"tracks": [track], "n": 3})
        assert len(new["results"]) == 3
        searched = _json(f"{base}/v1/search?q=calm+piano&n=3")
        assert [r["track_id"] for r in searched["results"]] == \
            [r["track_id"] for r in found["results"]]
        radio = _json(f"{base}/v1/radio?seed={track}&n=3")
        more = _json(f"{base}/v1/radio?cursor={radio['cursor']}&n=3")
        assert len({r["track_id"] for r in radio["results"] + more["results"]}) == 6
        # the Subsonic API with the demo's user (demo:demo)
        rest = f"{base}/rest/getSimilarSongs2?u=demo&p=demo&f=json&count=4&id={track}"
        assert len(_json(rest)["subsonic-response"]["similarSongs2"]["song"]) == 4

        status, audio, headers = _request(f"{base}/v1/tracks/{track}/audio",
                                          headers={"Range": "bytes=0-99"})
        assert status == 206 and len(audio) == 100
        full, _, _ = _request(f"{base}/v1/tracks/{track}/audio")
        assert full == 200
        # Query by example: 8 s of that track's audio, with noise, is identified.
        _, whole, _ = _request(f"{base}/v1/tracks/{track}/audio")
        y, sr = sf.read(io.BytesIO(whole), dtype="float32")
        clip = y[4 * sr : 12 * sr] + 0.01 * np.random.default_rng(0).standard_normal(8 * sr)
        buf = io.BytesIO()
        sf.write(buf, clip.astype(np.float32), sr, format="WAV")
        answer = json.loads(_request(f"{base}/v1/similar", buf.getvalue(),
                                     {"Content-Type": "audio/wav"})[1])
        assert answer["match"]["track_id"] == track and len(answer["results"]) > 0
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops the server cleanly
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, output.decode()
