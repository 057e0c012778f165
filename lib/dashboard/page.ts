/**
 * The dashboard page: plain HTML, CSS and one small script, kept as string
 * constants so that `deno compile` carries them without `--include` and the
 * page works on hosts with no internet access (no CDN, no web fonts).
 *
 * The script builds every node with `textContent`, never `innerHTML`, so a
 * name or description sent by a client cannot inject markup; the page's
 * Content-Security-Policy allows only these same-origin files anyway.
 * It follows `api/stream` (server-sent events) and polls the JSON API while
 * the stream is down.
 *
 * @module
 */

/** The page; `app.css` and `app.js` are served beside it. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>burrow dashboard</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header>
  <h1><span class="logo" aria-hidden="true"></span>burrow</h1>
  <p class="meta"><span id="version"></span> <span id="uptime"></span></p>
  <p class="link" id="link" data-state="connecting">connecting…</p>
</header>
<main>
  <section class="totals" id="totals" aria-label="Totals"></section>
  <section aria-labelledby="groups-title">
    <h2 id="groups-title">Groups online</h2>
    <div id="groups"><p class="empty">No group is online.</p></div>
  </section>
  <section aria-labelledby="offline-title">
    <h2 id="offline-title">Offline groups</h2>
    <div id="offline"><p class="empty">No group has gone offline.</p></div>
  </section>
  <section aria-labelledby="events-title">
    <h2 id="events-title">Events</h2>
    <ol id="events" class="events" reversed></ol>
  </section>
</main>
</body>
</html>
`;

/** Styles: light and dark, a table on a laptop, stacked cards on a phone. */
export const DASHBOARD_CSS = `:root {
  --bg: #f6f7f9; --panel: #fff; --text: #1d2330; --muted: #667085; --line: #e3e6eb;
  --accent: #2563eb; --accent2: #d97706; --ok: #16a34a; --bad: #dc2626; --warn: #b45309;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #11151c; --panel: #1a202a; --text: #e6e9ef; --muted: #98a2b3; --line: #2a3240;
    --accent: #60a5fa; --accent2: #fbbf24; --ok: #4ade80; --bad: #f87171; --warn: #fbbf24; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1rem;
  padding: .9rem 1.25rem; background: var(--panel); border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 1.25rem; display: flex; align-items: center; gap: .5rem; }
.logo { width: 1rem; height: 1rem; border-radius: 50% 50% 0 0; background: var(--accent); display: inline-block; }
.meta { margin: 0; color: var(--muted); }
.link { margin: 0 0 0 auto; font-size: .85rem; color: var(--muted); }
.link::before { content: ""; display: inline-block; width: .55rem; height: .55rem; border-radius: 50%;
  margin-right: .4rem; background: var(--muted); }
.link[data-state="live"]::before { background: var(--ok); }
.link[data-state="polling"]::before { background: var(--warn); }
.link[data-state="down"]::before { background: var(--bad); }
main { padding: 1rem 1.25rem 2rem; max-width: 1280px; margin: 0 auto; }
h2 { font-size: 1rem; margin: 1.5rem 0 .6rem; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); gap: .6rem; }
.stat { background: var(--panel); border: 1px solid var(--line); border-radius: .5rem; padding: .55rem .75rem; }
.stat .label { display: block; color: var(--muted); font-size: .78rem; }
.stat .value { display: block; font-size: 1.2rem; font-variant-numeric: tabular-nums; }
.group { background: var(--panel); border: 1px solid var(--line); border-radius: .5rem;
  margin-bottom: .8rem; overflow: hidden; }
.group-head { display: flex; flex-wrap: wrap; gap: .25rem .9rem; align-items: baseline;
  padding: .6rem .8rem; border-bottom: 1px solid var(--line); }
.group-name { font-weight: 600; font-size: 1.02rem; }
.badge { font-size: .72rem; padding: .05rem .45rem; border-radius: 1rem; border: 1px solid currentColor; }
.badge.online { color: var(--ok); }
.badge.offline { color: var(--bad); }
.kv { color: var(--muted); }
.kv b { color: var(--text); font-weight: 500; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .45rem .8rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
th { font-size: .75rem; color: var(--muted); font-weight: 500; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.app-name { font-weight: 600; }
.desc { display: block; color: var(--muted); font-size: .8rem; overflow-wrap: anywhere; }
svg.spark { width: 120px; height: 28px; display: block; }
svg.spark .in { stroke: var(--accent); fill: none; stroke-width: 1.5; }
svg.spark .out { stroke: var(--accent2); fill: none; stroke-width: 1.5; stroke-dasharray: 3 2; }
.rate { font-size: .75rem; color: var(--muted); white-space: nowrap; }
.rate .i { color: var(--accent); } .rate .o { color: var(--accent2); }
.empty { color: var(--muted); background: var(--panel); border: 1px dashed var(--line);
  border-radius: .5rem; padding: .8rem; margin: 0; }
.events { list-style: none; margin: 0; padding: 0; background: var(--panel);
  border: 1px solid var(--line); border-radius: .5rem; max-height: 24rem; overflow: auto; }
.events li { display: flex; gap: .6rem; padding: .4rem .8rem; border-bottom: 1px solid var(--line); align-items: baseline; }
.events li:last-child { border-bottom: 0; }
.events time { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; font-size: .8rem; }
.kind { font-size: .72rem; min-width: 5.5rem; text-align: center; padding: .05rem .4rem; border-radius: 1rem;
  border: 1px solid currentColor; }
.kind.connect, .kind.reconnect { color: var(--ok); }
.kind.disconnect { color: var(--warn); }
.kind.refused { color: var(--bad); }
.msg { overflow-wrap: anywhere; }
@media (max-width: 760px) {
  header { padding: .75rem 1rem; }
  main { padding: .75rem .75rem 2rem; }
  .link { margin-left: 0; width: 100%; }
  table thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { border-bottom: 1px solid var(--line); padding: .35rem 0; }
  tr:last-child { border-bottom: 0; }
  td { border: 0; padding: .2rem .8rem; display: flex; justify-content: space-between; gap: 1rem; text-align: right; }
  td.num { text-align: right; }
  td::before { content: attr(data-label); color: var(--muted); font-size: .78rem; text-align: left; }
  td.first { font-size: 1rem; }
  td.first::before { content: none; }
  td.first { display: block; text-align: left; }
  .events li { flex-wrap: wrap; }
}
`;

/** The page's script: no dependencies, no markup from data. */
export const DASHBOARD_JS = `"use strict";
(function () {
  var MAX_EVENTS = 200;
  var SLOTS = 60;
  var lastEventId = 0;
  var pollTimer = null;
  var source = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }
  function rate(n) { return bytes(n) + "/s"; }
  function ago(iso) {
    if (!iso) return "never";
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  function duration(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + m + "m" : m + "m " + (s % 60) + "s";
  }
  function clock(iso) { return new Date(iso).toLocaleTimeString(); }
  function setLink(state, text) { var l = $("link"); l.setAttribute("data-state", state); l.textContent = text; }

  function spark(series) {
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 120 28");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    var all = series.in.concat(series.out);
    var max = Math.max.apply(null, all.concat([1]));
    // A minute of slots, newest on the right; the seconds before sampling began draw as zero.
    var n = Math.max(SLOTS, series.in.length);
    ["in", "out"].forEach(function (dir) {
      var values = new Array(n - series[dir].length).fill(0).concat(series[dir]);
      var pts = values.map(function (v, i) {
        return (i * 120 / (n - 1)).toFixed(1) + "," + (27 - v / max * 25).toFixed(1);
      });
      if (pts.length < 2) pts = ["0,27", "120,27"];
      var line = document.createElementNS(NS, "polyline");
      line.setAttribute("class", dir);
      line.setAttribute("points", pts.join(" "));
      svg.appendChild(line);
    });
    var title = document.createElementNS(NS, "title");
    title.textContent = "bytes per second over the last minute (in: blue, out: amber)";
    svg.appendChild(title);
    return svg;
  }

  function stat(label, value, key) {
    return el("div", { className: "stat", "data-total": key }, [
      el("span", { className: "label", text: label }),
      el("span", { className: "value", text: value }),
    ]);
  }

  function renderStatus(status) {
    var t = status.totals;
    $("version").textContent = "v" + status.version;
    $("uptime").textContent = "up " + duration(status.uptimeSeconds);
    $("totals").replaceChildren(
      stat("Groups online", String(t.groupsOnline), "groupsOnline"),
      stat("Groups offline", String(t.groupsOffline), "groupsOffline"),
      stat("Apps", String(t.appsOnline), "appsOnline"),
      stat("Connections now", String(t.connections), "connections"),
      stat("Connections total", String(t.connectionsTotal), "connectionsTotal"),
      stat("Bytes in", bytes(t.bytesIn), "bytesIn"),
      stat("Bytes out", bytes(t.bytesOut), "bytesOut"),
      stat("Refusals", String(t.refusals), "refusals"),
      stat("Auth failures", String(t.authFailures), "authFailures")
    );
  }

  function cell(label, content, className) {
    var td = el("td", { "data-label": label, className: className || "" });
    if (typeof content === "string") td.textContent = content; else if (content) td.appendChild(content);
    return td;
  }
  function numCell(label, value, text, key) {
    var td = cell(label, text, "num " + key);
    td.setAttribute("data-value", String(value));
    return td;
  }

  function appRow(app) {
    var last = app.traffic.in.length - 1;
    var now = last >= 0 ? app.traffic.in[last] + app.traffic.out[last] : 0;
    var name = el("div", {}, [el("span", { className: "app-name", text: app.name })]);
    if (app.description) name.appendChild(el("span", { className: "desc", text: app.description }));
    var traffic = el("div", {}, [spark(app.traffic), el("span", { className: "rate" }, [
      el("span", { className: "i", text: "in " + rate(last >= 0 ? app.traffic.in[last] : 0) }),
      document.createTextNode(" · "),
      el("span", { className: "o", text: "out " + rate(last >= 0 ? app.traffic.out[last] : 0) }),
    ])]);
    traffic.setAttribute("data-rate", String(now));
    var tr = el("tr", { "data-app": app.name }, [
      cell("App", name, "first"),
      numCell("Port", app.port, String(app.port), "port"),
      numCell("Live", app.connections, String(app.connections), "live"),
      numCell("Total", app.connectionsTotal, String(app.connectionsTotal), "total"),
      numCell("In", app.bytesIn, bytes(app.bytesIn), "bytes-in"),
      numCell("Out", app.bytesOut, bytes(app.bytesOut), "bytes-out"),
      cell("Traffic", traffic, "traffic"),
      cell("Last activity", ago(app.lastActivity), "last"),
    ]);
    return tr;
  }

  function kv(label, value) {
    return el("span", { className: "kv" }, [document.createTextNode(label + " "), el("b", { text: value })]);
  }

  function groupCard(g) {
    var head = el("div", { className: "group-head" }, [
      el("span", { className: "group-name", text: g.name }),
      el("span", { className: "badge online", text: "online" }),
      kv("client", g.clientAddr),
      kv("burrow", g.clientVersion),
      kv("since", new Date(g.connectedSince).toLocaleString()),
    ]);
    var headRow = el("tr", {}, ["App", "Port", "Live", "Total", "In", "Out", "Traffic (1 min)", "Last activity"]
      .map(function (h, i) { return el("th", { text: h, className: i >= 1 && i <= 5 ? "num" : "" }); }));
    var body = el("tbody", {}, g.apps.map(appRow));
    if (g.apps.length === 0) {
      body.appendChild(el("tr", {}, [el("td", { colspan: "8", className: "first", text: "No app exposed." })]));
    }
    return el("article", { className: "group", "data-group": g.name }, [
      head,
      el("table", {}, [el("thead", {}, [headRow]), body]),
    ]);
  }

  function offlineTable(groups) {
    var head = el("tr", {}, ["Group", "Last address", "Version", "Offline since", "Why", "Apps", "In", "Out"]
      .map(function (h, i) { return el("th", { text: h, className: i >= 6 ? "num" : "" }); }));
    var rows = groups.map(function (g) {
      var bin = 0, bout = 0;
      g.apps.forEach(function (a) { bin += a.bytesIn; bout += a.bytesOut; });
      var apps = g.apps.map(function (a) { return a.name + ":" + a.port; }).join(", ") || "none";
      return el("tr", { "data-offline-group": g.name }, [
        cell("Group", g.name, "first"),
        cell("Last address", g.clientAddr),
        cell("Version", g.clientVersion),
        cell("Offline since", g.disconnectedAt ? ago(g.disconnectedAt) : ""),
        cell("Why", g.reason || ""),
        cell("Apps", apps),
        numCell("In", bin, bytes(bin), "bytes-in"),
        numCell("Out", bout, bytes(bout), "bytes-out"),
      ]);
    });
    return el("div", { className: "group" }, [el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)])]);
  }

  function renderGroups(groups) {
    var online = groups.filter(function (g) { return g.online; });
    var offline = groups.filter(function (g) { return !g.online; });
    $("groups").replaceChildren.apply($("groups"), online.length
      ? online.map(groupCard)
      : [el("p", { className: "empty", text: "No group is online." })]);
    $("offline").replaceChildren(offline.length
      ? offlineTable(offline)
      : el("p", { className: "empty", text: "No group has gone offline." }));
  }

  function addEvent(e) {
    if (e.id <= lastEventId) return;
    lastEventId = e.id;
    var list = $("events");
    var text = e.message + (e.code ? " (" + e.code + ")" : "");
    var item = el("li", { "data-kind": e.kind }, [
      el("time", { datetime: e.at, text: clock(e.at) }),
      el("span", { className: "kind " + e.kind, text: e.kind }),
      el("span", { className: "msg", text: text }),
    ]);
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
  }

  function getJSON(path) {
    return fetch(path, { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }

  function poll() {
    return Promise.all([getJSON("api/status"), getJSON("api/groups"), getJSON("api/events?since=" + lastEventId)])
      .then(function (r) {
        renderStatus(r[0]);
        renderGroups(r[1].groups);
        r[2].events.forEach(addEvent);
      });
  }

  function startPolling() {
    if (pollTimer !== null) return;
    setLink("polling", "polling every 2 s");
    pollTimer = setInterval(function () {
      poll().then(function () { setLink("polling", "polling every 2 s"); },
        function () { setLink("down", "server unreachable; retrying"); });
    }, 2000);
  }
  function stopPolling() { if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; } }

  function connect() {
    if (typeof EventSource === "undefined") return startPolling();
    source = new EventSource("api/stream");
    source.addEventListener("open", function () { stopPolling(); setLink("live", "live"); });
    source.addEventListener("snapshot", function (m) {
      var data = JSON.parse(m.data);
      renderStatus(data.status);
      renderGroups(data.groups);
      setLink("live", "live");
    });
    source.addEventListener("event", function (m) { addEvent(JSON.parse(m.data)); });
    source.addEventListener("error", function () {
      startPolling();
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
    });
  }

  poll().catch(function () { setLink("down", "server unreachable; retrying"); }).then(connect);
})();
`;

/** A small icon, so browsers do not ask for a missing favicon.ico. */
export const FAVICON_SVG =
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M2 15V8a6 6 0 0 1 12 0v7z" fill="#2563eb"/></svg>`;
