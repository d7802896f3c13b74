// The listening page: one live session per browser (its id in the URL and
// localStorage), the queue re-rendered from every reply of the JSON API
// (jplaylist/serving/app.py). Plain DOM, no build step.
"use strict";

const STORAGE_KEY = "jplaylist.session";
const $ = (id) => document.getElementById(id);
const state = { session: null, queue: [], current: null, busy: false };

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const error = new Error(data.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(error) { $("status").textContent = error ? String(error.message || error) : ""; }

function rememberSession(id) {
  state.session = id;
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set("session", id); localStorage.setItem(STORAGE_KEY, id); }
  else { url.searchParams.delete("session"); localStorage.removeItem(STORAGE_KEY); }
  window.history.replaceState(null, "", url);
  $("session-id").textContent = id || "";
  $("start-section").hidden = Boolean(id);
  $("session-section").hidden = !id;
}

function audioPath(id) { return "/audio/" + id.split("/").map(encodeURIComponent).join("/"); }
function card(id) { return state.queue.find((track) => track.id === id); }

function setCurrent(id) {
  state.current = id;
  const track = id && card(id);
  $("now-title").textContent = track ? track.title : "-";
  $("now-detail").textContent = track ? track.detail : "";
  const player = $("player");
  const src = id ? audioPath(id) : "";
  if (player.dataset.trackId !== (id || "")) {
    player.dataset.trackId = id || "";
    if (src) { player.src = src; } else { player.removeAttribute("src"); }
  }
  for (const row of $("queue-body").rows) {
    row.classList.toggle("current", row.dataset.trackId === id);
  }
}

function render(data) {
  state.queue = data.queue;
  const body = $("queue-body");
  body.replaceChildren(...data.queue.map((track, rank) => {
    const row = document.createElement("tr");
    row.dataset.trackId = track.id;
    const title = document.createElement("td");
    title.className = "track";
    title.innerHTML = "<div class='title'></div><div class='detail'></div>";
    title.firstChild.textContent = track.title;
    title.lastChild.textContent = track.detail;
    const play = button("Play", "play-button", () => playNow(track.id));
    const skip = button("Skip", "skip-button", () =>
      report("skip", track.id, track.id === state.current ? position() : 0));
    row.append(cell(String(rank + 1), "rank"), title, cell(track.score.toFixed(3), "score"),
               cell("", "actions", play, skip));
    return row;
  }));
  $("event-count").textContent = `after ${data.event} played`;
  const player = $("player");
  const keep = state.current && card(state.current) && !player.paused;
  setCurrent(keep ? state.current : (data.queue[0] ? data.queue[0].id : null));
  body.dataset.event = String(data.event);
  body.dataset.renders = String(Number(body.dataset.renders) + 1);
}

function cell(text, className, ...children) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  td.append(...children);
  return td;
}

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function position() { return Number($("player").currentTime.toFixed(3)); }

function log(kind, text, fields) {
  const item = document.createElement("li");
  item.textContent = `${kind}: ${text}`;
  Object.assign(item.dataset, { kind }, fields);
  $("log").prepend(item);
}

// One call at a time from this page; the server serialises per session too.
async function exclusive(work) {
  if (state.busy) return;
  state.busy = true;
  document.body.dataset.busy = "true";
  try { await work(); showError(null); }
  catch (error) {
    showError(error);
    if (error.status === 404 && /unknown session/.test(error.message)) rememberSession(null);
  }
  finally { state.busy = false; document.body.dataset.busy = "false"; }
}

// A listen or skip; the next track plays if this one was playing (or just ended).
function report(kind, trackId, seconds, ended = false) {
  if (!trackId) return;
  const wasPlaying = ended || (!$("player").paused && trackId === state.current);
  const title = card(trackId) ? card(trackId).title : trackId;
  return exclusive(async () => {
    if (trackId === state.current) $("player").pause();
    const data = await api("POST", `/api/sessions/${state.session}/events`,
                           { kind, track_id: trackId, seconds });
    log(data.played.kind, seconds === null ? title : `${title} after ${seconds.toFixed(1)} s`,
        { trackId, seconds: seconds === null ? "" : String(seconds) });
    render(data);
    if (wasPlaying && state.current) $("player").play().catch(showError);
  });
}

function playNow(trackId) {
  setCurrent(trackId);
  $("player").play().catch(showError);
}

async function start(event) {
  event.preventDefault();
  const text = $("start-text").value.trim();
  await exclusive(async () => {
    const data = await api("POST", "/api/sessions", text ? { text } : {});
    rememberSession(data.session);
    $("log").replaceChildren();
    if (text) log("start", text, { text });
    render(data);
  });
}

async function ask(event) {
  event.preventDefault();
  const text = $("request-text").value;
  await exclusive(async () => {
    const data = await api("POST", `/api/sessions/${state.session}/requests`, { text });
    log("request", text, { text });
    $("request-text").value = "";
    render(data);
  });
}

async function newSession() {
  const old = state.session;
  $("player").pause();
  rememberSession(null);
  setCurrent(null);
  if (old) await api("DELETE", `/api/sessions/${old}`).catch(() => null);
}

async function resume() {
  const id = new URL(window.location.href).searchParams.get("session") ||
             localStorage.getItem(STORAGE_KEY);
  if (!id) { rememberSession(null); return; }
  state.session = id;
  await exclusive(async () => {
    const data = await api("GET", `/api/sessions/${id}/queue`);
    rememberSession(id);
    render(data);
  });
  if (state.session !== id) rememberSession(null);
}

document.addEventListener("DOMContentLoaded", () => {
  $("start-form").addEventListener("submit", start);
  $("request-form").addEventListener("submit", ask);
  $("listen-button").addEventListener("click", () => report("listen", state.current, null));
  $("skip-button").addEventListener("click", () => report("skip", state.current, position()));
  $("new-session").addEventListener("click", newSession);
  $("player").addEventListener("ended", () => report("listen", state.current, null, true));
  resume().then(() => { document.body.dataset.ready = "true"; });
});
