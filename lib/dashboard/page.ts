/**
 * The dashboard page: plain HTML, CSS and one small module script, written as
 * real files in `assets/` (so fmt, lint and check see them) and imported as
 * text, so `deno compile` carries them inside the server program, with no
 * `--include`, and the page works on hosts with no internet access (no CDN,
 * no web fonts).
 *
 * The script builds every node with `textContent`, never `innerHTML`, so a
 * name or description sent by a client cannot inject markup; the page's
 * Content-Security-Policy allows only these same-origin files anyway.
 * It follows `api/stream` (server-sent events) and polls the JSON API while
 * the stream is down.
 *
 * @module
 */

import html from "./assets/index.html" with { type: "text" };
import css from "./assets/app.css" with { type: "text" };
import js from "./assets/app.js" with { type: "text" };
import favicon from "./assets/favicon.svg" with { type: "text" };

/** The page (`assets/index.html`); `app.css` and `app.js` are served beside it. */
export const DASHBOARD_HTML: string = html;

/** Styles (`assets/app.css`): light and dark, a table on a laptop, stacked cards on a phone. */
export const DASHBOARD_CSS: string = css;

/** The page's script (`assets/app.js`): no dependencies, no markup from data. */
export const DASHBOARD_JS: string = js;

/** A small icon (`assets/favicon.svg`), so browsers do not ask for a missing favicon.ico. */
export const FAVICON_SVG: string = favicon;
