// musicrec web page: plain JavaScript over the /v1 API, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const state = { q: "", offset: 0, seed: null };
// track id -> what tells it apart from tracks sharing its title (GET /v1/catalog/details)
let details = {};
// The radio: the tracks still to play, the cursor to fetch more, the one playing now.
const radio = { on: false, queue: [], cursor: null, exhausted: false, current: null };

async function api(path, options = {}) {
  const response = await fetch(path, { ...options,
                                       headers: { Accept: "application/json",
                                                  ...(options.headers || {}) } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

function trackPath(id) { return id.split("/").map(enc).join("/"); }

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function trackItem(track, withReason) {
  const li = el("li", { className: "track" });
  li.dataset.trackId = track.track_id;
  li.append(el("span", { className: "title", textContent: track.title }));
  if (details[track.track_id]) {
    li.append(el("span", { className: "detail", textContent: ` (${details[track.track_id]})` }));
  }
  if (track.artist) li.append(el("span", { className: "meta", textContent: " — " + track.artist }));
  if (track.plays !== undefined) {
    li.append(el("span", { className: "meta plays", textContent: ` (${track.plays} plays)` }));
  }
  if (track.score !== undefined) {
    li.append(el("span", { className: "meta", textContent: ` (${track.score.toFixed(3)})` }));
  }
  li.append(trackButtons(track));
  if (withReason && track.reason) li.append(reasonLine(track));
  return li;
}

// The kinds of reason whose `because` is a catalogue track (see recommender/types.py).
const NAMES_A_TRACK = new Set(["cf", "content", "played-content", "hybrid", "fingerprint",
                               "radio-content"]);

// "listeners of <a>X</a> also played this": the title links to the track it names.
function reasonLine(track) {
  const line = el("div", { className: "reason" });
  const at = track.because_title ? track.reason.indexOf(track.because_title) : -1;
  if (!NAMES_A_TRACK.has(track.kind) || !track.because || at < 0) {
    line.textContent = track.reason;
    return line;
  }
  const id = track.because;
  const detail = details[id] ? ` (${details[id]})` : "";
  const link = el("a", { href: `#track=${enc(id)}`, className: "because",
                         textContent: track.because_title + detail });
  link.dataset.trackId = id;
  link.addEventListener("click", (e) => { e.preventDefault(); openNamed(id); });
  link.addEventListener("mouseenter", () => markNamed(id, true));
  link.addEventListener("mouseleave", () => markNamed(id, false));
  line.append(track.reason.slice(0, at), link,
              track.reason.slice(at + track.because_title.length));
  return line;
}

// The user's history entries that a reason names, highlighted while the reason is hovered.
function markNamed(trackId, on) {
  for (const li of $("user-history").children) {
    if (li.dataset.trackId === trackId) li.classList.toggle("named", on);
  }
}

// Open the track a reason names: its similar tracks, and its entry in the history.
async function openNamed(trackId) {
  for (const li of $("user-history").children) {
    li.classList.toggle("selected", li.dataset.trackId === trackId);
  }
  try {
    const track = await api(`/v1/tracks/${trackPath(trackId)}`);
    await showSimilar(track);
    $("similar-section").scrollIntoView({ block: "start" });
  } catch (err) { setStatus("similar-status", err.message, true); }
}

function trackButtons(track) {
  const play = el("button", { type: "button", className: "play", textContent: "▶ play",
                              disabled: !track.audio_url });
  play.addEventListener("click", () => playTrack(track));
  const similar = el("button", { type: "button", className: "similar", textContent: "similar" });
  similar.addEventListener("click", () => showSimilar(track));
  const start = el("button", { type: "button", className: "radio", textContent: "start radio" });
  start.addEventListener("click", () => startRadio(track));
  return el("span", { className: "buttons" }, play, similar, start);
}

function setStatus(id, text, isError) {
  const node = $(id);
  node.textContent = text;
  node.className = isError ? "error" : "";
}

async function search(more) {
  if (!more) { state.q = $("q").value; state.offset = 0; $("search-results").replaceChildren(); }
  setStatus("search-status", "searching…");
  try {
    const page = await api(`/v1/tracks?q=${enc(state.q)}&offset=${state.offset}&limit=20`);
    for (const t of page.results) $("search-results").append(trackItem(t, false));
    state.offset += page.results.length;
    setStatus("search-status", `${page.total} tracks match`);
    $("more-btn").hidden = state.offset >= page.total;
  } catch (err) { setStatus("search-status", err.message, true); }
}

// Search by words (GET /v1/search): tracks whose tags fit the words, with the tags that
// matched; a query close to no tag is reported as a weak match.
async function searchWords() {
  const q = $("words").value.trim();
  if (!q) return;
  setStatus("words-status", "searching…");
  try {
    const body = await api(`/v1/search?q=${enc(q)}&n=10`);
    $("words-results").replaceChildren(...body.results.map((t) => trackItem(t, true)));
    const matched = body.parts.filter((p) => p.matched)
      .map((p) => `${p.text} → ${Object.keys(p.tags).join(", ")}`);
    if (body.weak_match) {
      setStatus("words-status", `weak match: no word of "${q}" is close to a tag of this ` +
                "model; the ranking is a guess", true);
    } else {
      setStatus("words-status", matched.length ? `matched tags: ${matched.join("; ")}`
                                               : `${body.results.length} tracks`);
    }
  } catch (err) { setStatus("words-status", err.message, true); }
}

function playTrack(track) {
  const player = $("player");
  player.src = track.audio_url;
  $("now-playing").textContent = track.title + (track.artist ? " — " + track.artist : "");
  player.play().catch((err) => setStatus("similar-status", "cannot play: " + err.message, true));
}

// -- radio: plays on when a track ends, fetching more with the cursor before it runs out --
async function fetchRadio(query) {
  const body = await api(`/v1/radio?n=10&${query}`);
  radio.cursor = body.cursor;
  radio.exhausted = body.exhausted;
  for (const t of body.results) {
    radio.queue.push(t);
    $("radio-results").append(trackItem(t, true));
  }
  return body;
}

async function startRadio(track) {
  radio.on = true;
  radio.queue = [];
  radio.cursor = null;
  $("radio-results").replaceChildren();
  $("radio-section").hidden = false;
  $("radio-title").textContent = "from " + track.title;
  setStatus("radio-status", "loading…");
  try {
    const body = await fetchRadio(`seed=${enc(track.track_id)}`);
    setStatus("radio-status", `${body.results.length} tracks queued`);
    if (track.audio_url) playTrack(track); else await radioNext();
  } catch (err) { setStatus("radio-status", err.message, true); }
}

async function radioNext() {
  if (!radio.on) return;
  try {
    if (radio.queue.length <= 2 && radio.cursor && !radio.exhausted) {
      await fetchRadio(`cursor=${enc(radio.cursor)}`);
    }
  } catch (err) { setStatus("radio-status", err.message, true); }
  let next = radio.queue.shift();
  while (next && !next.audio_url) next = radio.queue.shift();  // tracks without audio
  if (!next) { setStatus("radio-status", "the radio has played everything in its reach"); return; }
  radio.current = next;
  for (const li of $("radio-results").children) {
    li.classList.toggle("playing", li.dataset.trackId === next.track_id);
  }
  setStatus("radio-status", `playing: ${next.title} (${next.reason})`);
  playTrack(next);
}

function stopRadio() {
  radio.on = false;
  radio.queue = [];
  setStatus("radio-status", "radio stopped");
}

// -- the catalogue map ---------------------------------------------------------------------
let catalogueMap = null;

async function pickOnMap(trackId) {
  try {
    const track = await api(`/v1/tracks/${trackPath(trackId)}`);
    if (track.audio_url) playTrack(track);
    await showSimilar(track);
  } catch (err) { setStatus("map-status", err.message, true); }
}

async function loadMap(space) {
  setStatus("map-status", "loading…");
  try {
    const body = await api(`/v1/map?space=${enc(space)}`);
    catalogueMap.load(body);
    $("map-legend").replaceChildren(...catalogueMap.legend().map(([colour, text, kind]) => {
      const swatch = el("span", { className: "swatch " + kind });
      swatch.style[kind === "dot" ? "background" : "borderColor"] = colour;
      return el("li", {}, swatch, text);
    }));
    setStatus("map-status", `${body.n} of ${body.tracks} tracks, ${body.method}, ` +
              `coloured by ${body.colour_by}; scroll to zoom, drag to pan, click to play`);
    $("map-section").dataset.loaded = space;
  } catch (err) { setStatus("map-status", err.message, true); }
}

function initMap(layout) {
  const spaces = ["content", "cf"].filter((space) => (layout || {})[space]);
  if (!spaces.length || !window.CatalogueMap) return;
  $("map-section").hidden = false;
  for (const option of $("map-space").options) option.hidden = !spaces.includes(option.value);
  $("map-space").value = spaces[0];
  catalogueMap = new CatalogueMap($("map"), $("map-tip"), { onPick: pickOnMap });
  window.musicrecMap = catalogueMap;  // for the tests and benchmarks/bench_map.py
  $("map-space").addEventListener("change", () => loadMap($("map-space").value));
  const middle = () => [$("map").clientWidth / 2, $("map").clientHeight / 2];
  $("map-zoom-in").addEventListener("click", () => catalogueMap.zoomAt(...middle(), 2));
  $("map-zoom-out").addEventListener("click", () => catalogueMap.zoomAt(...middle(), 0.5));
  $("map-reset").addEventListener("click", () => catalogueMap.reset());
  return loadMap(spaces[0]);
}

function markMap(name, ids) { if (catalogueMap) catalogueMap.setMarks(name, ids); }

async function showSimilar(track) {
  state.seed = track;
  const detail = details[track.track_id] ? ` (${details[track.track_id]})` : "";
  $("seed-title").textContent = "to " + track.title + detail;
  const alpha = $("alpha").value;
  setStatus("similar-status", "loading…");
  try {
    const body = await api(`/v1/tracks/${trackPath(track.track_id)}/similar?n=10&alpha=${alpha}`);
    $("similar-results").replaceChildren(...body.results.map((t) => trackItem(t, true)));
    markMap("similar", body.results.map((t) => t.track_id));
    markMap("current", [track.track_id]);
    setStatus("similar-status", `${body.results.length} tracks, α = ${alpha}`);
  } catch (err) { setStatus("similar-status", err.message, true); }
}

async function showUser() {
  const user = $("user").value;
  if (!user) return;
  setStatus("user-status", "loading…");
  const played = $("exclude-played").checked;
  try {
    const [body, history] = await Promise.all([
      api(`/v1/users/${trackPath(user)}/recommendations?n=10&exclude_played=${played}`),
      api(`/v1/users/${trackPath(user)}/history?n=10`)]);
    $("user-results").replaceChildren(...body.results.map((t) => trackItem(t, true)));
    $("user-history").replaceChildren(...history.results.map((t) => trackItem(t, false)));
    markMap("history", history.results.map((t) => t.track_id));
    markMap("recs", body.results.map((t) => t.track_id));
    // each history entry says how many of the recommendations it led to
    const led = {};
    for (const r of body.results) if (r.because) led[r.because] = (led[r.because] || 0) + 1;
    for (const li of $("user-history").children) {
      const k = led[li.dataset.trackId];
      if (!k) continue;
      li.classList.add("cited");
      li.insertBefore(el("span", { className: "led", textContent: ` → ${k} recommended` }),
                      li.querySelector(".buttons"));
    }
    setStatus("user-status", `${body.results.length} recommendations for ${user}`);
  } catch (err) { setStatus("user-status", err.message, true); }
}

// -- listen: record the microphone (or take a file), convert it to a 16-bit PCM WAV in the
// browser (AudioContext decodes WebM/Opus, Ogg, MP3, FLAC...), POST it to /v1/similar --
const LISTEN_SECONDS = 10;   // the longest recording
const FILE_SECONDS = 30;     // the part of a chosen file that is sent
const WAV_RATE = 22050;      // the fingerprints work at 11,025 Hz; the embedders resample
const listen = { recorder: null, timer: null, started: 0 };

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);  // PCM
  view.setUint16(22, 1, true); view.setUint32(24, rate, true);                  // mono
  view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

// Decode any audio the browser can read, mix to mono at WAV_RATE, keep at most `seconds`.
async function toWav(blob, seconds) {
  const decoder = new OfflineAudioContext(1, 1, WAV_RATE);
  const audio = await decoder.decodeAudioData(await blob.arrayBuffer());
  const length = Math.min(audio.length, Math.round(seconds * WAV_RATE));
  const mono = new Float32Array(length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const channel = audio.getChannelData(c);
    for (let i = 0; i < length; i++) mono[i] += channel[i] / audio.numberOfChannels;
  }
  return { wav: encodeWav(mono, WAV_RATE), seconds: length / WAV_RATE };
}

function formatTime(s) {
  return `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

async function identify(blob, what, seconds) {
  setStatus("listen-status", `identifying ${what}…`);
  $("match").textContent = "";
  $("match").className = "";
  try {
    const clip = await toWav(blob, seconds);
    const body = await api("/v1/similar?n=10", { method: "POST", body: clip.wav,
                                                 headers: { "Content-Type": "audio/wav" } });
    const m = body.match;
    if (m) {
      const track = await api(`/v1/tracks/${trackPath(m.track_id)}`);
      const detail = details[m.track_id] ? ` (${details[m.track_id]})` : "";
      $("match").replaceChildren(
        "identified: ", el("span", { className: "title", textContent: m.title + detail }),
        `${track.artist ? " — " + track.artist : ""}, at ${formatTime(m.offset_s)} in the ` +
        `track, confidence ${m.confidence.toFixed(2)}`, trackButtons(track));
      $("match").className = "found";
      $("match").dataset.trackId = m.track_id;
      $("match").dataset.offset = m.offset_s;
    } else {
      $("match").textContent = "no match: the clip is not a recording in the catalogue";
      delete $("match").dataset.trackId;
    }
    $("clip-heading").hidden = false;
    $("clip-results").replaceChildren(...body.results.map((t) => trackItem(t, false)));
    setStatus("listen-status", `${what}: ${clip.seconds.toFixed(1)} s sent`);
  } catch (err) { setStatus("listen-status", `${what}: ${err.message}`, true); }
}

async function startListening() {
  if (listen.recorder) { listen.recorder.stop(); return; }  // a second press stops early
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) { setStatus("listen-status", "no microphone: " + err.message, true); return; }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
  recorder.addEventListener("stop", () => {
    clearInterval(listen.timer);
    for (const t of stream.getTracks()) t.stop();
    listen.recorder = null;
    $("listen-btn").textContent = "listen";
    $("listen-btn").classList.remove("recording");
    identify(new Blob(chunks, { type: recorder.mimeType }), "the recording", LISTEN_SECONDS);
  });
  listen.recorder = recorder;
  listen.started = performance.now();
  recorder.start();
  $("listen-btn").textContent = "stop";
  $("listen-btn").classList.add("recording");
  const tick = () => {
    const left = LISTEN_SECONDS - (performance.now() - listen.started) / 1000;
    if (left <= 0) { if (recorder.state === "recording") recorder.stop(); return; }
    setStatus("listen-status", `listening… ${Math.ceil(left)} s left (press stop to send now)`);
  };
  tick();
  listen.timer = setInterval(tick, 250);
}

function initListen() {
  $("listen-btn").addEventListener("click", startListening);
  $("clip-file").addEventListener("change", () => {
    const file = $("clip-file").files[0];
    if (file) identify(file, file.name, FILE_SECONDS);
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) identify(file, file.name, FILE_SECONDS);
  });
  if (!window.MediaRecorder || !navigator.mediaDevices) {
    $("listen-btn").disabled = true;
    setStatus("listen-status", "this browser cannot record; drop a file instead");
  }
}

async function init() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("words-form").addEventListener("submit", (e) => { e.preventDefault(); searchWords(); });
  $("more-btn").addEventListener("click", () => search(true));
  $("alpha").addEventListener("input", () => {
    $("alpha-value").textContent = Number($("alpha").value).toFixed(2);
  });
  $("alpha").addEventListener("change", () => { if (state.seed) showSimilar(state.seed); });
  $("user").addEventListener("change", showUser);
  $("player").addEventListener("ended", radioNext);
  $("radio-stop").addEventListener("click", stopRadio);
  $("exclude-played").addEventListener("change", showUser);
  initListen();
  try {
    const model = await api("/v1/model");
    $("model-info").textContent = `${model.kind} model, ${model.manifest.counts.tracks} tracks`;
    if (model.kind === "cf") $("alpha").disabled = true;
    if (model.kind === "content") $("alpha").disabled = true;
    $("listen-section").hidden = model.kind === "cf";  // query by example needs audio vectors
    details = (await api("/v1/catalog/details")).details;
    await initMap(model.manifest.layout);
    const spec = String((model.manifest.embedder || {}).spec || "");
    $("words-section").hidden = !(model.manifest.tags || spec.startsWith("hf:"));
    const users = await api("/v1/users?limit=200");
    for (const u of users.users) $("user").append(el("option", { value: u, textContent: u }));
    if (!users.total) $("user-section").hidden = true;
  } catch (err) { $("model-info").textContent = err.message; }
  document.body.dataset.ready = "true";
}

init();
