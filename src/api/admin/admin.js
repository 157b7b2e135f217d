// The operator page: asks for the API key once per tab (sessionStorage,
// never a URL), polls /api/admin/stats every second and draws it, and acts
// through the publish API's own endpoints with the same key.

const KEY_SLOT = "realtime-admin-key";
const POLL_MS = 1000;
// Five minutes of one-second samples for the chart.
const WINDOW = 300;

const $ = (id) => document.getElementById(id);
const samples = []; // {t, in, out}: per-second rates
let previous = null; // the last stats and when they came
let polling = null;

function apiKey() {
  return sessionStorage.getItem(KEY_SLOT);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function setStatus(text, bad = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", bad);
}

async function call(method, path, body) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}), cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let data;
  try { data = JSON.parse(text); } catch { data = text; }
  if (response.status === 401) signOut("the server refused the key");
  return { status: response.status, data };
}

function show(id, result) {
  const out = $(id);
  out.textContent = `${result.status}\n${JSON.stringify(result.data, null, 2)}`;
  out.classList.toggle("error", result.status >= 400);
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(1)} ${units[i]}`;
}

function duration(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `up ${h}h${m}m` : `up ${m}m${s % 60}s`;
}

function sum(obj) {
  return Object.values(obj).reduce((a, b) => a + b, 0);
}

function cell(text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "n";
  return td;
}

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

// With Redis every event, this instance's own included, comes back from
// Redis: those are the events in. Without it, the API's.
function eventsIn(stats) {
  return stats.redis ? stats.published.redis : stats.published.api;
}

function record(stats, now) {
  if (previous) {
    const dt = (now - previous.at) / 1000;
    if (dt > 0) {
      samples.push({
        t: now,
        in: Math.max(0, eventsIn(stats) - eventsIn(previous.stats)) / dt,
        out: Math.max(0, stats.deliveries - previous.stats.deliveries) / dt,
      });
      while (samples.length > WINDOW) samples.shift();
    }
  }
  previous = { stats, at: now };
}

function render(stats) {
  $("total").textContent = stats.connections;
  $("total").dataset.value = stats.connections;
  $("uptime").textContent = duration(stats.uptimeSeconds);
  const last = samples[samples.length - 1];
  $("rate-in").textContent = last ? last.in.toFixed(1) : "–";
  $("rate-out").textContent = last ? last.out.toFixed(1) : "–";
  const historyBytes = stats.shards.reduce((a, s) => a + s.historyBytes, 0);
  $("history-bytes").textContent = bytes(historyBytes);
  $("history-events").textContent = `${stats.shards.reduce((a, s) => a + s.historyEvents, 0)} events`;
  const links = stats.redis;
  const up = links ? links.filter((l) => l.subscriber && l.publisher).length : 0;
  $("redis-state").textContent = links ? (up === links.length ? "connected" : `${links.length - up} shard(s) down`) : "disabled";
  $("redis-reconnects").textContent = links ? `${stats.redisReconnects} reconnects` : "";

  fillRows($("shards").tBodies[0], stats.shards.map((s) => {
    const link = links && links.find((l) => l.shard === s.shard);
    const state = (b) => (b ? "up" : "down");
    return [
      cell(s.shard), cell(s.connections, true), cell(s.deliveries, true), cell(s.inboxMessages, true),
      cell(bytes(s.sendQueueBytes), true), cell(bytes(s.historyBytes), true),
      cell(link ? `${state(link.subscriber)} / ${state(link.publisher)}` : "–"),
    ];
  }));

  const rooms = $("rooms").tBodies[0];
  fillRows(rooms, stats.busiestRooms.map((r) => [cell(r.room), cell(r.connections, true)]));
  [...rooms.rows].forEach((tr, i) => {
    tr.dataset.room = stats.busiestRooms[i].room;
    tr.addEventListener("click", () => roomMembers(tr.dataset.room));
  });

  const refusals = [
    ...Object.entries(stats.authFailures).map(([reason, n]) => [`auth failure: ${reason}`, n]),
    ["slow-client closes", stats.slowClientCloses],
    ["rate limited", stats.rateLimited],
    ...Object.entries(stats.dropped).map(([reason, n]) => [`dropped: ${reason}`, n]),
    ["publishes held", stats.publishesHeld],
    ["disconnected sessions", stats.disconnectedSessions],
  ];
  fillRows($("refusals").tBodies[0], refusals.map(([what, n]) => [cell(what), cell(n, true)]));
  $("refusals").dataset.authFailures = sum(stats.authFailures);
  drawChart();
}

function drawChart() {
  const canvas = $("rates");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const pad = { left: 56, right: 8, top: 10, bottom: 20 };
  const w = width - pad.left - pad.right, h = height - pad.top - pad.bottom;
  const top = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out))) * 1.1;
  const style = getComputedStyle(document.documentElement);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = style.getPropertyValue("--muted");
  g.strokeStyle = style.getPropertyValue("--line");
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + (h * i) / 4;
    g.beginPath(); g.moveTo(pad.left, y); g.lineTo(pad.left + w, y); g.stroke();
    g.fillText((top * (1 - i / 4)).toFixed(top < 10 ? 1 : 0), 4, y + 4);
  }
  g.fillText("−5 min", pad.left, height - 4);
  g.fillText("now", pad.left + w - 20, height - 4);
  const now = samples.length ? samples[samples.length - 1].t : 0;
  const x = (t) => pad.left + w - ((now - t) / (WINDOW * POLL_MS)) * w;
  const y = (v) => pad.top + h - (v / top) * h;
  for (const [field, color] of [["in", "--in"], ["out", "--out"]]) {
    g.strokeStyle = style.getPropertyValue(color);
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((s, i) => (i ? g.lineTo(x(s.t), y(s[field])) : g.moveTo(x(s.t), y(s[field]))));
    g.stroke();
  }
}

async function poll() {
  polling = null;
  try {
    const { status, data } = await call("GET", "/api/admin/stats");
    if (status !== 200) {
      if (status !== 401) setStatus(`stats answered ${status}: ${data.error || ""}`, true);
    } else {
      record(data, performance.now());
      render(data);
      setStatus(`live · ${new Date().toLocaleTimeString()}`);
    }
  } catch (e) {
    setStatus(`cannot reach the server: ${e.message}`, true);
  }
  if (!$("board").hidden) polling = setTimeout(poll, POLL_MS);
}

function signIn(key) {
  sessionStorage.setItem(KEY_SLOT, key);
  $("login").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  samples.length = 0;
  previous = null;
  if (!polling) poll();
}

function signOut(why) {
  sessionStorage.removeItem(KEY_SLOT);
  clearTimeout(polling);
  polling = null;
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  setStatus(why, Boolean(why) && why !== "not signed in");
}

async function roomMembers(room) {
  const result = await call("GET", `/api/rooms/${encodeURIComponent(room)}/presence`);
  const out = $("room-members");
  out.hidden = false;
  show("room-members", result);
  out.dataset.room = room;
}

function onSubmit(id, action) {
  $(id).addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await action();
    } catch (err) {
      setStatus(`request failed: ${err.message}`, true);
    }
  });
}

onSubmit("login", () => signIn($("key").value.trim()));
$("sign-out").addEventListener("click", () => signOut("not signed in"));

onSubmit("presence-form", async () => {
  const user = $("presence-user").value.trim();
  show("presence-out", await call("GET", `/api/users/${encodeURIComponent(user)}/presence`));
});

onSubmit("disconnect-form", async () => {
  const user = $("disconnect-user").value.trim();
  const reason = $("disconnect-reason").value.trim();
  if (!confirm(`Close every session of user ${user}${reason ? ` (${reason})` : ""}?`)) return;
  const body = reason ? { reason } : {};
  show("disconnect-out", await call("POST", `/api/users/${encodeURIComponent(user)}/disconnect`, body));
});

onSubmit("history-form", async () => {
  const room = $("history-room").value.trim();
  const limit = Number($("history-limit").value) || 20;
  show("history-out", await call("GET", `/api/rooms/${encodeURIComponent(room)}/history?limit=${limit}`));
});

onSubmit("publish-form", async () => {
  let payload;
  try {
    payload = JSON.parse($("publish-payload").value);
  } catch (e) {
    show("publish-out", { status: "not sent", data: `the payload is not JSON: ${e.message}` });
    $("publish-out").classList.add("error");
    return;
  }
  const body = { room: $("publish-room").value.trim(), type: $("publish-type").value.trim(), payload };
  show("publish-out", await call("POST", "/api/notifications/broadcast", body));
});

if (apiKey() !== null) signIn(apiKey());
