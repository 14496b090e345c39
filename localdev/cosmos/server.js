#!/usr/bin/env node
// Local Cosmos DB for development and tests: @vercel/cosmosdb-server, served over
// plain HTTP with keep-alive, and corrected where it deviates from real Cosmos DB
// so that the app's production code needs no allowance for it:
//   * the account advertises http:// endpoints (endpoint discovery works as in Azure);
//   * a point read of a missing item answers 404 NotFound (the stand-in throws: 500).
// TTL is stored but not enforced, as in the stand-in; tests check the stored values.
"use strict";
const http = require("http");
const crypto = require("crypto");
const lib = "@vercel/cosmosdb-server/lib";
const Account = require(`${lib}/account`).default;
const routes = require(`${lib}/routes`).default;

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

function createServer(host, port) {
  const account = new Account(host, port);
  const endpoint = `http://${host}:${port}/`;
  for (const key of ["writableLocations", "readableLocations"]) {
    account.read()[key].forEach((location) => { location.databaseAccountEndpoint = endpoint; });
  }
  return http.createServer({ keepAlive: true }, (req, res) => {
    (async () => {
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
}

if (require.main === module) {
  const { host, port } = parseArgs(process.argv.slice(2));
  const server = createServer(host, port);
  server.listen(port, host, () => console.log(`Cosmos DB stand-in listening on http://${host}:${port}/`));
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
}

module.exports = { createServer };
