// The example library against the running stack; tests/sdk/test_sdk_js.py
// runs it with the stack's local.env in the environment, plus
// HELIX_TEST_FREE_CLIENT_ID/SECRET (a free-plan client: 5 requests/s),
// HELIX_TEST_API_KEY and HELIX_TEST_TOKEN_LIFETIME_S (the stack's token
// lifetime), and NODE_EXTRA_CA_CERTS=HELIX_CA_FILE.
import assert from "node:assert/strict";
import {test} from "node:test";
import {APIKey, ClientCredentials, HelixWS, infer, simpleRequest} from "../helixflow.mjs";

const env = process.env;
for (const k of ["HELIX_HTTPS_URL", "HELIX_TOKEN_URL", "HELIX_CLIENT_ID", "HELIX_CLIENT_SECRET",
  "HELIX_TEST_FREE_CLIENT_ID", "HELIX_TEST_FREE_CLIENT_SECRET", "HELIX_TEST_API_KEY", "HELIX_TEST_TOKEN_LIFETIME_S"]) {
  assert.ok(env[k], `${k} is not set: run this through tests/sdk/test_sdk_js.py`);
}
const base = env.HELIX_HTTPS_URL;
const wss = base.replace(/^https:/, "wss:");
const demo = () => new ClientCredentials({tokenUrl: env.HELIX_TOKEN_URL, clientId: env.HELIX_CLIENT_ID, clientSecret: env.HELIX_CLIENT_SECRET});

function checkSimple(answer, a, b) {
  const out = (n) => answer.outputs.find((o) => o.name === n);
  assert.deepEqual(out("OUTPUT0").data, a.map((v, i) => v + b[i]));
  assert.deepEqual(out("OUTPUT1").data, a.map((v, i) => v - b[i]));
  assert.deepEqual(out("OUTPUT0").shape, [1, 16]);
}

const a = [...Array(16).keys()];
const b = a.map((v) => 2 * v + 1);

test("REST inference with client credentials", async () => {
  checkSimple(await infer(base, "simple", simpleRequest(a, b), demo()), a, b);
});

test("REST and WebSocket inference with an API key", async () => {
  const key = new APIKey(env.HELIX_TEST_API_KEY);
  checkSimple(await infer(base, "simple", simpleRequest(a, b), key), a, b);
  const ws = new HelixWS(wss, "simple", key);
  try {
    checkSimple(await ws.infer(simpleRequest(a, b)), a, b);
  } finally {
    ws.close();
  }
});

test("a wrong API key is refused 401, not retried", async () => {
  await assert.rejects(infer(base, "simple", simpleRequest(), new APIKey("hx_not-a-key")), (err) => err.status === 401);
});

test("a free-plan client is retried to success", async () => {
  const creds = new ClientCredentials({tokenUrl: env.HELIX_TOKEN_URL, clientId: env.HELIX_TEST_FREE_CLIENT_ID, clientSecret: env.HELIX_TEST_FREE_CLIENT_SECRET});
  let throttled = 0, withReset = 0;
  const onRetry = (status, _ms, headers) => {
    if (status === 429) throttled++;
    if (headers.get("x-ratelimit-reset") !== null) withReset++;
  };
  const answers = await Promise.all(Array.from({length: 15}, () => infer(base, "simple", simpleRequest(a, b), creds, {onRetry})));
  answers.forEach((ans) => checkSimple(ans, a, b));
  assert.ok(throttled > 0, "no request was refused 429: the free plan was not exercised");
  assert.equal(withReset, throttled, "every 429 carries x-ratelimit-reset");
});

test("WebSocket: many requests on one connection, answers matched by id", async () => {
  const ws = new HelixWS(wss, "simple", demo());
  try {
    const answers = await Promise.all(Array.from({length: 50}, (_, i) => ws.infer(simpleRequest(Array(16).fill(i), Array(16).fill(1)))));
    answers.forEach((ans, i) => assert.deepEqual(ans.outputs.find((o) => o.name === "OUTPUT0").data, Array(16).fill(i + 1)));
  } finally {
    ws.close();
  }
});

test("WebSocket: a stream longer than a token's lifetime reconnects with fresh tokens and loses nothing", async () => {
  const lifetimeMs = 1000 * Number(env.HELIX_TEST_TOKEN_LIFETIME_S);
  const creds = demo();
  const ws = new HelixWS(wss, "simple", creds);
  const sent = [];
  try {
    const end = Date.now() + lifetimeMs + 5000;
    for (let i = 0; Date.now() < end; i++) {
      sent.push(ws.infer(simpleRequest(Array(16).fill(i), Array(16).fill(1))).then((ans) => [i, ans]));
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const [i, ans] of await Promise.all(sent)) {
      assert.deepEqual(ans.outputs.find((o) => o.name === "OUTPUT0").data, Array(16).fill(i + 1));
    }
  } finally {
    ws.close();
  }
  assert.ok(ws.connects >= 2, `${ws.connects} connection(s): the expired token's close (1008) was not followed by a reconnect`);
  assert.ok(creds.fetched >= 2, `${creds.fetched} token(s) fetched`);
});
