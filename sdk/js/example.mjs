// Calls model simple through the gateway over REST and over WebSocket with
// the credentials of the environment (source .helix/local.env), and prints
// a summary as JSON. Usage:
//
//   NODE_EXTRA_CA_CERTS=$HELIX_CA_FILE node example.mjs [--count 20]
import {credentialsFromEnv, HelixWS, infer, simpleRequest} from "./helixflow.mjs";

const count = Number(process.argv[process.argv.indexOf("--count") + 1] || 20);
const creds = credentialsFromEnv();
const base = process.env.HELIX_HTTPS_URL;

const rest = await infer(base, "simple", simpleRequest(), creds);
const sum = rest.outputs.find((o) => o.name === "OUTPUT0").data;

const ws = new HelixWS(base.replace(/^https:/, "wss:"), "simple", creds);
const answers = await Promise.all(Array.from({length: count}, (_, i) =>
  ws.infer(simpleRequest(Array(16).fill(i), Array(16).fill(1)))));
ws.close();
const wsOK = answers.every((a, i) => a.outputs.find((o) => o.name === "OUTPUT0").data.every((v) => v === i + 1));

console.log(JSON.stringify({rest_sum: sum, websocket_answers: answers.length, websocket_ok: wsOK}));
process.exit(wsOK ? 0 : 1);
