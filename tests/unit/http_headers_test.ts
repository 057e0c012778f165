/** Header rewriting at the edge: hop-by-hop fields, forwarded fields, cookies, upgrades. */

import assert from "node:assert/strict";
import {
  clientAddress,
  downstreamHeaders,
  switchingHead,
  upstreamHeaders,
} from "../../lib/http/headers.ts";

/** A flat list as pairs, for readable comparisons. */
function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
}

Deno.test("toward the app: hop-by-hop fields go, forwarded fields are set by the edge", () => {
  const raw = [
    "Host",
    "Blog.Example.org:8080",
    "User-Agent",
    "t/1",
    "Connection",
    "keep-alive, X-Secret, x-forwarded-for",
    "X-Secret",
    "drop me",
    "Keep-Alive",
    "timeout=5",
    "TE",
    "trailers",
    "Trailer",
    "x",
    "Transfer-Encoding",
    "chunked",
    "Proxy-Connection",
    "keep-alive",
    "Upgrade",
    "h2c",
    "X-Forwarded-For",
    "203.0.113.9",
    "X-Forwarded-For",
    "198.51.100.1, 10.0.0.1",
    "X-Forwarded-Proto",
    "https",
    "X-Real-IP",
    "6.6.6.6",
    "X-Forwarded-Host",
    "spoofed.example",
    "Expect",
    "100-continue",
    "Via",
    "1.0 corp-proxy",
    "Accept",
    "*/*",
  ]; // deno-fmt-ignore
  const out = upstreamHeaders(raw, {
    remote: "::ffff:192.0.2.7",
    proto: "http",
    host: "Blog.Example.org:8080",
    httpVersion: "1.1",
  });
  assert.deepEqual(pairs(out), [
    ["Host", "Blog.Example.org:8080"],
    ["User-Agent", "t/1"],
    ["Accept", "*/*"],
    ["X-Forwarded-For", "203.0.113.9, 198.51.100.1, 10.0.0.1, 192.0.2.7"],
    ["X-Forwarded-Proto", "http"],
    ["X-Forwarded-Host", "Blog.Example.org:8080"],
    ["X-Real-IP", "192.0.2.7"],
    ["Via", "1.0 corp-proxy, 1.1 burrow"],
  ]);
});

Deno.test("toward the app: host_header, upgrade, chunked, consumed auth, HTTP/2 pseudo-fields and cookies", () => {
  const raw = [
    ":method",
    "GET",
    ":authority",
    "app.example.org",
    ":path",
    "/",
    "cookie",
    "a=1",
    "authorization",
    "Basic YTpi",
    "cookie",
    "b=2",
  ]; // deno-fmt-ignore
  const out = upstreamHeaders(raw, {
    remote: "2001:db8::1",
    proto: "https",
    host: "app.example.org",
    hostHeader: "localhost:3000",
    httpVersion: "2.0",
    upgrade: "websocket",
    chunked: true,
    dropAuthorization: true,
  });
  assert.deepEqual(pairs(out), [
    ["Host", "localhost:3000"],
    ["Cookie", "a=1; b=2"],
    ["X-Forwarded-For", "2001:db8::1"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "app.example.org"],
    ["X-Real-IP", "2001:db8::1"],
    ["Via", "2.0 burrow"],
    ["Connection", "upgrade"],
    ["Upgrade", "websocket"],
    ["Transfer-Encoding", "chunked"],
  ]);
  const kept = upstreamHeaders(["Authorization", "Bearer x"], {
    remote: "192.0.2.1",
    proto: "http",
    host: "h.example.org",
    httpVersion: "1.1",
  });
  assert.ok(pairs(kept).some(([k, v]) => k === "Authorization" && v === "Bearer x"));
});

Deno.test("toward the user: hop-by-hop fields go, repeated fields stay apart", () => {
  const raw = [
    "Content-Type",
    "text/plain",
    "Connection",
    "close, X-Internal",
    "X-Internal",
    "secret",
    "Transfer-Encoding",
    "chunked",
    "Keep-Alive",
    "timeout=5",
    "Set-Cookie",
    "a=1",
    "Set-Cookie",
    "b=2",
    "Upgrade",
    "h2c",
  ]; // deno-fmt-ignore
  assert.deepEqual(downstreamHeaders(raw), {
    "content-type": "text/plain",
    "set-cookie": ["a=1", "b=2"],
  });
});

Deno.test("the 101 head keeps Upgrade and Connection, drops the old framing", () => {
  const head = switchingHead("", [
    "Upgrade",
    "websocket",
    "Connection",
    "Upgrade",
    "Sec-WebSocket-Accept",
    "abc=",
    "Content-Length",
    "0",
  ]); // deno-fmt-ignore
  assert.equal(
    head,
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: abc=\r\n\r\n",
  );
});

Deno.test("clientAddress shows IPv4-mapped addresses as IPv4", () => {
  assert.equal(clientAddress("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(clientAddress("::1"), "::1");
  assert.equal(clientAddress(undefined), "unknown");
});
