// @ts-check
/// <reference lib="dom" />
/**
 * The inspector page: polls `api/requests` once a second (only records newer
 * than the last finished one), lists them, shows one in detail and replays
 * it. Every node is built with `textContent`: request data never becomes
 * markup.
 */

/**
 * @typedef {{ size: number, truncated: boolean, encoding: "utf8" | "base64", data: string }} Body
 * @typedef {{ id: number, app: string, method: string, url: string, httpVersion: string,
 *   requestHeaders: [string, string][], requestBody: Body, status: number,
 *   responseHeaders: [string, string][], responseBody: Body, startedAt: number,
 *   durationMs?: number, error?: string, replayOf?: number }} Rec
 */

/** @type {Map<number, Rec>} */
const records = new Map();
/** @type {number | undefined} */
let selected;

/** @param {string} id */
function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no #${id}`);
  return node;
}

/**
 * @param {string} tag
 * @param {string} [text]
 * @param {string} [className]
 */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** @param {Rec} r */
function duration(r) {
  if (r.durationMs === undefined) return "…";
  return r.durationMs < 1000
    ? `${r.durationMs.toFixed(1)} ms`
    : `${(r.durationMs / 1000).toFixed(2)} s`;
}

/** @param {Rec} r */
function statusText(r) {
  if (r.error && r.status === 0) return "failed";
  return r.status === 0 ? "…" : String(r.status);
}

/** @param {Body} body */
function bodyText(body) {
  if (body.size === 0) return "(empty)";
  const shown = body.encoding === "utf8" ? body.data : `(binary, base64)\n${body.data}`;
  return body.truncated
    ? `${shown}\n… (${body.size} bytes in all, the first ${64 * 1024} shown)`
    : shown;
}

function renderList() {
  const tbody = /** @type {HTMLTableElement} */ (byId("requests")).tBodies[0];
  if (!tbody) return;
  const rows = [...records.values()].sort((a, b) => b.id - a.id);
  tbody.replaceChildren(...rows.map((r) => {
    const tr = el("tr");
    tr.dataset.id = String(r.id);
    tr.setAttribute("aria-selected", String(r.id === selected));
    tr.append(
      el("td", new Date(r.startedAt).toLocaleTimeString()),
      el("td", r.app),
      el("td", r.method),
      el("td", r.url + (r.replayOf ? "  ↻" : "")),
      el("td", statusText(r), `status-${String(r.status)[0] ?? "0"}`),
      el("td", duration(r)),
    );
    tr.addEventListener("click", () => {
      selected = r.id;
      renderList();
      renderDetail();
    });
    return tr;
  }));
  byId("empty").hidden = rows.length > 0;
  byId("count").textContent = rows.length === 1 ? "1 request" : `${rows.length} requests`;
}

/**
 * @param {string} id
 * @param {[string, string][]} headers
 */
function renderHeaders(id, headers) {
  const tbody = /** @type {HTMLTableElement} */ (byId(id)).tBodies[0];
  tbody?.replaceChildren(...headers.map(([k, v]) => {
    const tr = el("tr");
    tr.append(el("td", k), el("td", v));
    return tr;
  }));
}

function renderDetail() {
  const r = selected === undefined ? undefined : records.get(selected);
  const detail = byId("detail");
  detail.hidden = !r;
  if (!r) return;
  byId("detail-title").textContent = `${r.method} ${r.url}`;
  byId("detail-meta").textContent =
    `${r.app} · ${statusText(r)} · ${duration(r)} · HTTP/${r.httpVersion}` +
    (r.error ? ` · ${r.error}` : "") + (r.replayOf ? ` · replay of #${r.replayOf}` : "");
  renderHeaders("req-headers", r.requestHeaders);
  renderHeaders("res-headers", r.responseHeaders);
  byId("req-body").textContent = bodyText(r.requestBody);
  byId("res-body").textContent = bodyText(r.responseBody);
  byId("req-body-size").textContent = `${r.requestBody.size} bytes`;
  byId("res-body-size").textContent = `${r.responseBody.size} bytes`;
  /** @type {HTMLButtonElement} */ (byId("replay")).disabled = r.requestBody.truncated;
}

/** The id to ask for newer records after: the last one before any still under way. */
function since() {
  let last = 0;
  for (const r of [...records.values()].sort((a, b) => a.id - b.id)) {
    if (r.durationMs === undefined && !r.error) return r.id - 1;
    last = r.id;
  }
  return last;
}

async function poll() {
  const link = byId("link");
  try {
    const res = await fetch(`api/requests?since=${since()}`);
    if (!res.ok) throw new Error(String(res.status));
    /** @type {{ requests: Rec[] }} */
    const body = await res.json();
    for (const r of body.requests) records.set(r.id, r);
    link.dataset.state = "live";
    link.textContent = "live";
    renderList();
    renderDetail();
  } catch {
    link.dataset.state = "down";
    link.textContent = "inspector unreachable";
  }
}

byId("replay").addEventListener("click", async () => {
  if (selected === undefined) return;
  const note = byId("replay-note");
  note.textContent = "replaying…";
  const res = await fetch(`api/requests/${selected}/replay`, {
    method: "POST",
    headers: { "x-burrow-replay": "1" },
  });
  if (res.ok) {
    /** @type {Rec} */
    const r = await res.json();
    records.set(r.id, r);
    selected = r.id;
    note.textContent = `replayed as #${r.id}: ${r.status}`;
  } else {
    note.textContent = await res.text();
  }
  renderList();
  renderDetail();
});

byId("clear").addEventListener("click", async () => {
  await fetch("api/requests", { method: "DELETE", headers: { "x-burrow-replay": "1" } });
  records.clear();
  selected = undefined;
  renderList();
  renderDetail();
});

poll();
setInterval(poll, 1000);
