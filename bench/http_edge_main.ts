/**
 * A child of `http_bench.ts`: either the app (`app`: a tiny `Deno.serve`
 * answering `ok`) or the edge (`edge APP_PORT`: the HTTP edge routing
 * `bench.example.test` to that app, `dial` a plain loopback connection, so
 * the figure is the edge's own cost, without the tunnel). Prints
 * `listening PORT` once bound; stops on SIGTERM.
 *
 * @module
 */

import { HttpEdge } from "../lib/http/edge.ts";
import { RouteTable } from "../lib/http/routes.ts";

const [role, appPort] = Deno.args;
if (role === "app") {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.log(`listening ${port}`) },
    () => new Response("ok\n"),
  );
  Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
} else {
  const routes = new RouteTable();
  routes.claim({ id: "b/app", group: "b", kind: "http", hosts: ["bench.example.test"], paths: [] });
  const edge = await HttpEdge.start({
    http: { hostname: "127.0.0.1", port: 0 },
    routes,
    dial: async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(appPort) });
      conn.setNoDelay(true);
      return conn;
    },
  });
  console.log(`listening ${edge.httpAddr?.port}`);
  Deno.addSignalListener("SIGTERM", () => edge.close().then(() => Deno.exit(0)));
}
