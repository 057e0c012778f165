/**
 * A user, as its own process (for tests that connect from a network
 * namespace). Prints one result line and exits 0.
 *
 *   connect HOST PORT TIMEOUT_MS
 *     -> `connected`, `refused`, `unreachable` or `timeout`
 *   echo HOST PORT BYTES [CHUNK DELAY_MS]
 *     sends BYTES random bytes (paced as CHUNK bytes every DELAY_MS when
 *     given), half-closes, reads the echo to EOF
 *     -> `echo SENT_SHA256 RECEIVED_SHA256 RECEIVED_BYTES` or `error REASON`
 *     (paced: a `started` line first, once the first chunk is sent)
 *
 * @module
 */

const [mode, host = "", portText = "0", ...rest] = Deno.args;
const port = Number(portText);

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

if (mode === "connect") {
  const timeoutMs = Number(rest[0] ?? 2000);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  const attempt = Deno.connect({ hostname: host, port }).then((c) => {
    c.close();
    return "connected";
  }, (err: Error) => {
    if (err instanceof Deno.errors.ConnectionRefused) return "refused";
    return /unreachable/i.test(err.message) ? "unreachable" : `error ${err.message}`;
  });
  console.log(await Promise.race([attempt, timeout]));
  clearTimeout(timer);
  Deno.exit(0);
}

if (mode === "echo") {
  const size = Number(rest[0] ?? 0);
  const chunk = Number(rest[1] ?? size);
  const delayMs = Number(rest[2] ?? 0);
  const data = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) {
    crypto.getRandomValues(data.subarray(off, Math.min(size, off + 65536)));
  }
  try {
    const conn = await Deno.connect({ hostname: host, port });
    const received: Uint8Array[] = [];
    let total = 0;
    const reading = (async () => {
      const buf = new Uint8Array(64 * 1024);
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        received.push(buf.slice(0, n));
        total += n;
      }
    })();
    for (let off = 0; off < size; off += chunk) {
      const part = data.subarray(off, Math.min(size, off + chunk));
      let done = 0;
      while (done < part.length) done += await conn.write(part.subarray(done));
      if (off === 0 && delayMs > 0) console.log("started"); // the test may cut the link now
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs)); // pacing, so a transfer spans an outage
    }
    await conn.closeWrite();
    await reading;
    conn.close();
    const back = new Uint8Array(total);
    let at = 0;
    for (const part of received) {
      back.set(part, at);
      at += part.length;
    }
    console.log(`echo ${await sha256(data)} ${await sha256(back)} ${total}`);
  } catch (err) {
    console.log(`error ${(err as Error).message}`);
  }
  Deno.exit(0);
}

console.log(`error unknown mode ${mode}`);
Deno.exit(2);
