#!/usr/bin/env node
// Local Cosmos DB for development and tests: @vercel/cosmosdb-server, served over
// plain HTTP with keep-alive, and corrected where it deviates from real Cosmos DB
// so that the app's production code needs no allowance for it:
//   * the account advertises http:// endpoints (endpoint discovery works as in Azure);
//   * a point read of a missing item answers 404 NotFound (the stand-in throws: 500);
//   * a query no longer takes time quadratic in the container's size (its compiled code
//     collected the documents with `[...acc, x]` in a reduce: 30,000 documents took 16 s,
//     100,000 would take minutes); the results are the same.
// TTL is stored but not enforced, as in the stand-in; tests check the stored values.
// For benchmarks (outside /dbs, so no Cosmos DB route can collide with them):
//   GET  /_localdev/stats        requests served, by kind, in all and per container;
//   POST /_localdev/stats/reset  zero them;
//   POST /_localdev/bulk/<db>/<container>  upsert a JSON array of documents in one request
//        (seeding only; not counted, and the container must exist).
"use strict";
const http = require("http");
const crypto = require("crypto");
const lib = "@vercel/cosmosdb-server/lib";
const Account = require(`${lib}/account`).default;
const routes = require(`${lib}/routes`).default;

// The query library turns `FROM c` into `coll.reduce(($, c) => [...$, { c: c }], [])`: quadratic.
// Rewrite that one accumulation into a push (same result, linear) before the code is compiled.
const executor = require(require.resolve("@zeit/cosmosdb-query/lib/executor", {
  paths: [require.resolve("@vercel/cosmosdb-server")],
}));
const QUADRATIC_ACCUMULATION = /\[\.\.\.\$, (\{\s*\w+: \w+\s*\})\]/g;
const execute = executor.default;
executor.default = (collection, options) =>
  execute(collection, { ...options, code: String(options.code).replace(QUADRATIC_ACCUMULATION, "($.push($1), $)") });

function parseArgs(argv) {
  const args = { port: 8081, host: "127.0.0.1" };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === "--port" || argv[i] === "-p") args.port = Number(argv[++i]);
    else if (argv[i] === "--host") args.host = argv[++i];
  }
  return args;
}

const notFound = { code: "NotFound", message: "Entity with the specified id does not exist in the system." };

function isMissingPointRead(req, account, params) {
  if (req.method !== "GET" || !params || !params.docId) return false;
  // The stand-in's read handler throws only when the document is absent.
  return Boolean(account.database(params.dbId).collection(params.collId).read());
}

const KINDS = ["pointRead", "create", "replace", "upsert", "delete", "query", "other"];
const DOC = /^\/+dbs\/[^/]+\/colls\/([^/]+)\/docs(\/[^/]+)?\/*$/;

function isTrue(req, name) {
  return String(req.headers[name] || "").toLowerCase() === "true";
}

// The kind of a Cosmos DB request, as the stand-in's router tells them apart.
function requestKind(req) {
  const path = (req.url || "").split("?")[0];
  const match = DOC.exec(path);
  if (!match) return ["other", null];
  const [, container, item] = match;
  const method = req.method;
  if (item) {
    if (method === "GET") return ["pointRead", container];
    if (method === "PUT") return ["replace", container];
    if (method === "DELETE") return ["delete", container];
    return ["other", container];
  }
  if (method !== "POST") return ["other", container];
  if (isTrue(req, "x-ms-documentdb-isquery") || req.headers["content-type"] === "application/query+json") {
    return ["query", container];
  }
  if (isTrue(req, "x-ms-documentdb-is-upsert")) return ["upsert", container];
  if (isTrue(req, "x-ms-cosmos-is-batch-request")) return ["other", container];
  return ["create", container];
}

class RequestStats {
  constructor() { this.reset(); }

  reset() {
    this.since = Date.now();
    this.total = 0;
    this.kinds = Object.fromEntries(KINDS.map((kind) => [kind, 0]));
    this.containers = {};
  }

  count(req) {
    const [kind, container] = requestKind(req);
    this.total += 1;
    this.kinds[kind] += 1;
    if (container) {
      const perContainer = this.containers[container] || (this.containers[container] = {});
      perContainer[kind] = (perContainer[kind] || 0) + 1;
    }
  }

  snapshot() {
    return { since: this.since, total: this.total, kinds: { ...this.kinds }, containers: structuredClone(this.containers) };
  }
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))); } catch (err) { reject(err); }
    });
    req.on("error", reject);
  });
}

// The /_localdev/ routes; returns [status, body] or null when the request is not one of them.
async function localdevRoute(req, account, stats) {
  const path = (req.url || "").split("?")[0].replace(/\/+$/, "");
  if (req.method === "GET" && path === "/_localdev/stats") return [200, stats.snapshot()];
  if (req.method === "POST" && path === "/_localdev/stats/reset") { stats.reset(); return [200, stats.snapshot()]; }
  const bulk = /^\/_localdev\/bulk\/([^/]+)\/([^/]+)$/.exec(path);
  if (req.method === "POST" && bulk) {
    const collection = account.database(decodeURIComponent(bulk[1])).collection(decodeURIComponent(bulk[2]));
    if (!collection.read()) return [404, { message: "no such container" }];
    const docs = await readJson(req);
    if (!Array.isArray(docs)) return [400, { message: "expected a JSON array of documents" }];
    for (const doc of docs) collection.documents.upsert(doc);
    return [200, { upserted: docs.length }];
  }
  return path.startsWith("/_localdev") ? [404, { message: "no route" }] : null;
}

function createServer(host, port) {
  const account = new Account(host, port);
  const endpoint = `http://${host}:${port}/`;
  for (const key of ["writableLocations", "readableLocations"]) {
    account.read()[key].forEach((location) => { location.databaseAccountEndpoint = endpoint; });
  }
  const stats = new RequestStats();
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    (async () => {
      const local = await localdevRoute(req, account, stats);
      if (local) {
        res.statusCode = local[0];
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify(local[1]));
        return;
      }
      stats.count(req);
      const route = routes(req);
      let body;
      if (!route) {
        res.statusCode = 400;
        body = { message: "no route" };
      } else {
        const [params, handler] = route;
        try {
          body = await handler(account, req, res, params);
        } catch (err) {
          if (isMissingPointRead(req, account, params)) {
            res.statusCode = 404;
            body = notFound;
          } else {
            console.error(err);
            res.statusCode = 500;
            body = { message: err.message };
          }
        }
        if (res.statusCode > 399 && body && !body.message) body.message = "";
      }
      if (body && body._etag) res.setHeader("etag", body._etag);
      res.setHeader("content-type", "application/json");
      res.setHeader("content-location", `${endpoint}${req.url.replace(/^\//, "")}`);
      res.setHeader("x-ms-activity-id", crypto.randomUUID());
      res.setHeader("x-ms-request-charge", "1");
      res.end(JSON.stringify(body));
    })().catch((err) => {
      console.error(err);
      if (!res.writableEnded) { res.statusCode = 500; res.end(""); }
    });
  });
  server.stats = stats;
  return server;
}

if (require.main === module) {
  const { host, port } = parseArgs(process.argv.slice(2));
  const server = createServer(host, port);
  server.listen(port, host, () => console.log(`Cosmos DB stand-in listening on http://${host}:${port}/`));
  // close() waits for open requests; a client that keeps one open must not hold the stop up.
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      server.close(() => process.exit(0));
      server.closeIdleConnections();
      setTimeout(() => process.exit(0), 1000).unref();
    });
  }
}

module.exports = { createServer };
