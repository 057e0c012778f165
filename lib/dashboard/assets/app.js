// @ts-check
/// <reference lib="dom" />
/**
 * The dashboard page's script: no dependencies, no markup from data. Every
 * node is built with `textContent`, never `innerHTML`, so a name or a
 * description sent by a client cannot inject markup. It renders the status
 * and the groups, follows `api/stream` (server-sent events) and polls the
 * JSON API every 2 s while the stream is down.
 *
 * A module script, so its names stay out of the page's global scope.
 *
 * @module
 */
const MAX_EVENTS = 200;
const SLOTS = 60;
let lastEventId = 0;
/** @type {ReturnType<typeof setInterval> | null} */
let pollTimer = null;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * An element with attributes (`text` sets its text, `className` its class)
 * and children (falsy ones skipped).
 *
 * @param {string} tag
 * @param {Record<string, string> | null} [attrs]
 * @param {(Node | null | undefined)[]} [children]
 */
function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (k === "text") node.textContent = v;
    else if (k === "className") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children ?? []) if (c) node.appendChild(c);
  return node;
}

/** @param {number} n */
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

/** @param {number} n */
const rate = (n) => bytes(n) + "/s";

/** @param {string | null | undefined} iso */
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const [n, unit] = s < 60 ? [s, "s"] : s < 3600 ? [s / 60, "m"] : [s / 3600, "h"];
  return s >= 86400 ? Math.floor(s / 86400) + "d ago" : Math.floor(n) + unit + " ago";
}

/** @param {number} s */
function duration(s) {
  const d = Math.floor(s / 86400);
  const h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60);
  return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + m + "m" : m + "m " + (s % 60) + "s";
}

/** @param {string} iso */
const clock = (iso) => new Date(iso).toLocaleTimeString();

/**
 * @param {"connecting" | "live" | "polling" | "down"} state
 * @param {string} text
 */
function setLink(state, text) {
  const l = $("link");
  l.setAttribute("data-state", state);
  l.textContent = text;
}

/**
 * A sparkline of bytes per second, in and out.
 *
 * @param {{ in: number[]; out: number[] }} series
 */
function spark(series) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 28");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const max = Math.max(...series.in, ...series.out, 1);
  // A minute of slots, newest on the right; the seconds before sampling began draw as zero.
  const n = Math.max(SLOTS, series.in.length);
  for (const dir of /** @type {const} */ (["in", "out"])) {
    const values = new Array(n - series[dir].length).fill(0).concat(series[dir]);
    let pts = values.map((v, i) =>
      (i * 120 / (n - 1)).toFixed(1) + "," + (27 - v / max * 25).toFixed(1)
    );
    if (pts.length < 2) pts = ["0,27", "120,27"];
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("class", dir);
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
  }
  const title = document.createElementNS(NS, "title");
  title.textContent = "bytes per second over the last minute (in: blue, out: amber)";
  svg.appendChild(title);
  return svg;
}

/**
 * @param {string} label
 * @param {string} value
 * @param {string} key
 */
function stat(label, value, key) {
  return el("div", { className: "stat", "data-total": key }, [
    el("span", { className: "label", text: label }),
    el("span", { className: "value", text: value }),
  ]);
}

/** @param {any} status `api/status` */
function renderStatus(status) {
  const t = status.totals;
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
    stat("Auth failures", String(t.authFailures), "authFailures"),
    ...clusterStats(status.cluster),
  );
}

/** @param {any} c `api/status`'s `cluster`, when the server is a cluster node */
function clusterStats(c) {
  if (!c) return [];
  const down = c.storeState !== "connected";
  const why = down ? c.storeState + " since " + clock(c.storeSince) + ": registrations wait" : "";
  const store = stat("Store " + c.store, why || "connected", "clusterStore");
  if (down) store.classList.add("warn");
  const nodes = stat("Cluster nodes", String(c.nodes.length), "clusterNodes");
  return [stat("Node", c.node, "clusterNode"), nodes, store];
}

/**
 * @param {string} label
 * @param {string | Node | null | undefined} content
 * @param {string} [className]
 */
function cell(label, content, className) {
  const td = el("td", { "data-label": label, className: className || "" });
  if (typeof content === "string") td.textContent = content;
  else if (content) td.appendChild(content);
  return td;
}

/**
 * @param {string} label
 * @param {number} value
 * @param {string} text
 * @param {string} key
 */
function numCell(label, value, text, key) {
  const td = cell(label, text, "num " + key);
  td.setAttribute("data-value", String(value));
  return td;
}

/**
 * The replicas of a shared app: client address, health and users now.
 * @param {any[]} replicas
 */
function replicaList(replicas) {
  return el(
    "ul",
    { className: "replicas" },
    replicas.map((r) =>
      el("li", { "data-healthy": String(r.healthy) }, [
        el("span", { className: "replica-addr", text: r.clientAddr }),
        el("span", {
          className: "replica-health " + (r.healthy ? "up" : "down"),
          text: r.healthy ? "healthy" : "unhealthy" + (r.reason ? ": " + r.reason : ""),
        }),
        el("span", { className: "replica-conns", text: r.connections + " live" }),
      ])
    ),
  );
}

/** @param {any} app one app of a group in `api/groups` */
function appRow(app) {
  const last = app.traffic.in.length - 1;
  const now = last >= 0 ? app.traffic.in[last] + app.traffic.out[last] : 0;
  const name = el("div", {}, [el("span", { className: "app-name", text: app.name })]);
  if (app.description) name.appendChild(el("span", { className: "desc", text: app.description }));
  if (app.replicas) name.appendChild(replicaList(app.replicas));
  if (app.udp) {
    const u = app.udp;
    const text = `datagrams ${u.datagramsIn} in · ${u.datagramsOut} out · ${u.dropped} dropped`;
    name.appendChild(el("span", { className: "desc udp", text }));
  }
  const traffic = el("div", {}, [
    spark(app.traffic),
    el("span", { className: "rate" }, [
      el("span", { className: "i", text: "in " + rate(last >= 0 ? app.traffic.in[last] : 0) }),
      document.createTextNode(" · "),
      el("span", { className: "o", text: "out " + rate(last >= 0 ? app.traffic.out[last] : 0) }),
    ]),
  ]);
  traffic.setAttribute("data-rate", String(now));
  const port = app.type === "udp" ? "udp/" + app.port : String(app.port);
  const urls = app.urls?.join(" ");
  return el("tr", { "data-app": app.name }, [
    cell("App", name, "first"),
    urls ? cell("Port", urls, "port urls") : numCell("Port", app.port, port, "port"),
    numCell("Live", app.connections, String(app.connections), "live"),
    numCell("Total", app.connectionsTotal, String(app.connectionsTotal), "total"),
    numCell("In", app.bytesIn, bytes(app.bytesIn), "bytes-in"),
    numCell("Out", app.bytesOut, bytes(app.bytesOut), "bytes-out"),
    cell("Traffic", traffic, "traffic"),
    cell("Last activity", ago(app.lastActivity), "last"),
  ]);
}

/**
 * @param {string} label
 * @param {string} value
 */
const kv = (label, value) =>
  el("span", { className: "kv" }, [document.createTextNode(label + " "), el("b", { text: value })]);

/** @param {any} g an online group of `api/groups` */
function groupCard(g) {
  const head = el("div", { className: "group-head" }, [
    el("span", { className: "group-name", text: g.name }),
    el("span", { className: "badge online", text: "online" }),
    g.node ? kv("node", g.node) : null,
    g.clientAddr ? kv("client", g.clientAddr) : null,
    kv("burrow", g.clientVersion),
    kv("since", new Date(g.connectedSince).toLocaleString()),
  ]);
  const headRow = el(
    "tr",
    {},
    ["App", "Port", "Live", "Total", "In", "Out", "Traffic (1 min)", "Last activity"]
      .map((h, i) => el("th", { text: h, className: i >= 1 && i <= 5 ? "num" : "" })),
  );
  const body = el("tbody", {}, g.apps.map(appRow));
  if (g.apps.length === 0) {
    body.appendChild(
      el("tr", {}, [el("td", { colspan: "8", className: "first", text: "No app exposed." })]),
    );
  }
  return el("article", { className: "group", "data-group": g.name }, [
    head,
    el("table", {}, [el("thead", {}, [headRow]), body]),
  ]);
}

/** @param {any[]} groups the offline groups of `api/groups` */
function offlineTable(groups) {
  const head = el(
    "tr",
    {},
    ["Group", "Last address", "Version", "Offline since", "Why", "Apps", "In", "Out"]
      .map((h, i) => el("th", { text: h, className: i >= 6 ? "num" : "" })),
  );
  const rows = groups.map((g) => {
    let bin = 0;
    let bout = 0;
    for (const a of g.apps) {
      bin += a.bytesIn;
      bout += a.bytesOut;
    }
    const apps = g.apps.map((/** @type {any} */ a) =>
      a.name + ":" + (a.urls ? a.urls.join(" ") : a.port)
    ).join(", ") || "none";
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
  return el("div", { className: "group" }, [
    el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]),
  ]);
}

/** @param {any[]} groups `api/groups` */
function renderGroups(groups) {
  const online = groups.filter((g) => g.online);
  const offline = groups.filter((g) => !g.online);
  $("groups").replaceChildren(
    ...(online.length
      ? online.map(groupCard)
      : [el("p", { className: "empty", text: "No group is online." })]),
  );
  $("offline").replaceChildren(
    offline.length
      ? offlineTable(offline)
      : el("p", { className: "empty", text: "No group has gone offline." }),
  );
}

/** @param {any} e one event of `api/events` or the stream */
function addEvent(e) {
  if (e.id <= lastEventId) return;
  lastEventId = e.id;
  const list = $("events");
  const text = e.message + (e.code ? " (" + e.code + ")" : "");
  const item = el("li", { "data-kind": e.kind }, [
    el("time", { datetime: e.at, text: clock(e.at) }),
    el("span", { className: "kind " + e.kind, text: e.kind }),
    el("span", { className: "msg", text: text }),
  ]);
  list.insertBefore(item, list.firstChild);
  while (list.children.length > MAX_EVENTS && list.lastChild) list.removeChild(list.lastChild);
}

/** @param {string} path */
async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

async function poll() {
  const [status, groups, events] = await Promise.all([
    getJSON("api/status"),
    getJSON("api/groups"),
    getJSON("api/events?since=" + lastEventId),
  ]);
  renderStatus(status);
  renderGroups(groups.groups);
  events.events.forEach(addEvent);
}

function startPolling() {
  if (pollTimer !== null) return;
  setLink("polling", "polling every 2 s");
  pollTimer = setInterval(() => {
    poll().then(
      () => setLink("polling", "polling every 2 s"),
      () => setLink("down", "server unreachable; retrying"),
    );
  }, 2000);
}

function stopPolling() {
  if (pollTimer !== null) {
    clearInterval(pollTimer);
    pollTimer = null;
  }
}

function connect() {
  if (typeof EventSource === "undefined") return startPolling();
  const stream = new EventSource("api/stream");
  stream.addEventListener("open", () => {
    stopPolling();
    setLink("live", "live");
  });
  stream.addEventListener("snapshot", (m) => {
    const data = JSON.parse(/** @type {MessageEvent} */ (m).data);
    renderStatus(data.status);
    renderGroups(data.groups);
    setLink("live", "live");
  });
  stream.addEventListener(
    "event",
    (m) => addEvent(JSON.parse(/** @type {MessageEvent} */ (m).data)),
  );
  stream.addEventListener("error", () => {
    startPolling();
    if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  });
}

poll().catch(() => setLink("down", "server unreachable; retrying")).then(connect);
