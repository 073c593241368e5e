// musicrec web page: plain JavaScript over the /v1 API, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const state = { q: "", offset: 0, seed: null };
// The radio: the tracks still to play, the cursor to fetch more, the one playing now.
const radio = { on: false, queue: [], cursor: null, exhausted: false, current: null };

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
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
  if (track.artist) li.append(el("span", { className: "meta", textContent: " — " + track.artist }));
  if (track.plays !== undefined) {
    li.append(el("span", { className: "meta plays", textContent: ` (${track.plays} plays)` }));
  }
  if (track.score !== undefined) {
    li.append(el("span", { className: "meta", textContent: ` (${track.score.toFixed(3)})` }));
  }
  const play = el("button", { type: "button", className: "play", textContent: "▶ play",
                              disabled: !track.audio_url });
  play.addEventListener("click", () => playTrack(track));
  const similar = el("button", { type: "button", className: "similar", textContent: "similar" });
  similar.addEventListener("click", () => showSimilar(track));
  const start = el("button", { type: "button", className: "radio", textContent: "start radio" });
  start.addEventListener("click", () => startRadio(track));
  li.append(play, similar, start);
  if (withReason && track.reason) {
    li.append(el("div", { className: "reason", textContent: track.reason }));
  }
  return li;
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

async function showSimilar(track) {
  state.seed = track;
  $("seed-title").textContent = "to " + track.title;
  const alpha = $("alpha").value;
  setStatus("similar-status", "loading…");
  try {
    const body = await api(`/v1/tracks/${trackPath(track.track_id)}/similar?n=10&alpha=${alpha}`);
    $("similar-results").replaceChildren(...body.results.map((t) => trackItem(t, true)));
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
    setStatus("user-status", `${body.results.length} recommendations for ${user}`);
  } catch (err) { setStatus("user-status", err.message, true); }
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
  try {
    const model = await api("/v1/model");
    $("model-info").textContent = `${model.kind} model, ${model.manifest.counts.tracks} tracks`;
    if (model.kind === "cf") $("alpha").disabled = true;
    if (model.kind === "content") $("alpha").disabled = true;
    const spec = String((model.manifest.embedder || {}).spec || "");
    $("words-section").hidden = !(model.manifest.tags || spec.startsWith("hf:"));
    const users = await api("/v1/users?limit=200");
    for (const u of users.users) $("user").append(el("option", { value: u, textContent: u }));
    if (!users.total) $("user-section").hidden = true;
  } catch (err) { $("model-info").textContent = err.message; }
  document.body.dataset.ready = "true";
}

init();
