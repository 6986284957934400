// A webhook receiver for pallycon-pack, verifying each delivery with the Standard Webhooks
// reference library (`npm install standardwebhooks`). Node's own http server; a sketch of what
// your own endpoint does, in any framework:
//
//     WEBHOOK_SECRET=whsec_... PORT=8000 node receive.mjs
//
// 1. verify the raw body and the three webhook-* headers before parsing anything (the library
//    compares in constant time and refuses a timestamp more than 5 minutes off);
// 2. drop a webhook-id already handled: a delivery can come more than once (at least once);
// 3. answer 2xx quickly (do slow work after answering): anything else is retried.
//
// Each verified event is printed as one JSON line.
import http from "node:http";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.WEBHOOK_SECRET); // whsec_...; from your secret store
const seen = new Set(); // in production: a table with a unique key on webhook-id

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const body = Buffer.concat(chunks); // the raw bytes: verify before parsing
    let event;
    try {
      event = webhook.verify(body, request.headers);
    } catch (error) {
      console.error(`refused: ${error.message}`);
      response.writeHead(400).end();
      return;
    }
    const webhookId = request.headers["webhook-id"];
    if (!seen.has(webhookId)) { // a repeat is acknowledged, not handled twice
      seen.add(webhookId);
      const data = event.data ?? {};
      console.log(JSON.stringify({ webhook_id: webhookId, type: event.type, request_id: data.request_id ?? null }));
    }
    response.writeHead(204).end();
  });
});

server.listen(Number(process.env.PORT ?? 8000), "127.0.0.1", () => {
  console.error(`listening on http://127.0.0.1:${server.address().port}/`);
});
