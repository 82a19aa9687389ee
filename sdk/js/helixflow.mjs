// HelixFlow from JavaScript (Node 20+): an access token from OAuth2 client
// credentials (cached, refreshed before expiry), KServe v2 REST inference
// with fetch and retries, and WebSocket inference (the `ws` package: Node 20
// has no global WebSocket) over reconnecting connections.
//
// An example to copy from, not a published package: see
// docs/sdk/javascript.md. The gateway's certificate is verified against
// NODE_EXTRA_CA_CERTS (set it to HELIX_CA_FILE for a local stack).

import WebSocket from "ws";

/** Replace a token this long (ms) before it expires. */
export const REFRESH_BEFORE_MS = 10_000;

/**
 * Access tokens of an OAuth2 client (client credentials grant, HTTP Basic).
 * token() answers the cached token until REFRESH_BEFORE_MS before its
 * expiry; concurrent callers share one fetch.
 */
export class ClientCredentials {
  /** @param {{tokenUrl: string, clientId: string, clientSecret: string, scope?: string}} cfg */
  constructor({tokenUrl, clientId, clientSecret, scope}) {
    if (!tokenUrl || !clientId || !clientSecret) {
      throw new Error("client credentials need tokenUrl, clientId and clientSecret (HELIX_TOKEN_URL, HELIX_CLIENT_ID, HELIX_CLIENT_SECRET)");
    }
    Object.assign(this, {tokenUrl, clientId, clientSecret, scope});
    this.cached = null;     // {token, expiresAt}
    this.inFlight = null;   // a Promise of the fetch under way
    this.fetched = 0;       // tokens fetched so far (for tests and logs)
  }

  /** @returns {Promise<string>} a current access token */
  async token() {
    if (this.cached && Date.now() < this.cached.expiresAt - REFRESH_BEFORE_MS) return this.cached.token;
    this.inFlight ??= this.fetchToken().finally(() => { this.inFlight = null; });
    return this.inFlight;
  }

  /** @returns {Promise<Record<string, string>>} the headers that authenticate a request */
  async headers() {
    return {authorization: `Bearer ${await this.token()}`};
  }

  async fetchToken() {
    // RFC 6749 2.3.1: id and secret are form-urlencoded inside Basic.
    const basic = Buffer.from(`${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.clientSecret)}`).toString("base64");
    const body = new URLSearchParams({grant_type: "client_credentials"});
    if (this.scope) body.set("scope", this.scope);
    const res = await fetch(this.tokenUrl, {
      method: "POST", body,
      headers: {authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded"},
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) {
      throw new HelixError(`token endpoint: ${res.status} ${answer.error ?? ""}: ${answer.error_description ?? ""}`, res.status);
    }
    this.fetched++;
    this.cached = {token: answer.access_token, expiresAt: Date.now() + (answer.expires_in ?? 300) * 1000};
    return this.cached.token;
  }
}

/** An API key (hx_...), sent in x-api-key; nothing to refresh. */
export class APIKey {
  constructor(key) {
    if (!key) throw new Error("empty API key (HELIX_API_KEY)");
    this.key = key;
  }
  async token() { return this.key; }
  async headers() { return {"x-api-key": this.key}; }
}

/** An error answer: the HTTP status (or WebSocket message code) and text. */
export class HelixError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^attempt)] ms. */
export function backoff(attempt, baseMs = 100, maxMs = 5000) {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** attempt);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * KServe v2 REST inference through the gateway: POST
 * {baseUrl}/v2/models/{model}/infer with a JSON request. 429 (the plan's
 * limit) and 503 are retried with backoff and full jitter, after a 429
 * waiting at least the gateway's x-ratelimit-reset; at most `attempts`
 * tries. Other errors throw HelixError at once. onRetry(status, waitMs,
 * headers), when given, is told of each retry.
 */
export async function infer(baseUrl, model, request, creds, {attempts = 6, baseMs = 100, maxMs = 5000, onRetry} = {}) {
  const url = `${baseUrl.replace(/\/$/, "")}/v2/models/${encodeURIComponent(model)}/infer`;
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(url, {
      method: "POST", body: JSON.stringify(request),
      headers: {...(await creds.headers()), "content-type": "application/json"},
    });
    if (res.ok) return res.json();
    const text = await res.text();
    if (![429, 503].includes(res.status) || attempt + 1 >= attempts) {
      throw new HelixError(`POST ${url}: ${res.status}: ${text}`, res.status);
    }
    const resetMs = res.status === 429 ? 1000 * (Number(res.headers.get("x-ratelimit-reset")) || 0) : 0;
    const waitMs = resetMs + backoff(attempt, baseMs, maxMs);
    onRetry?.(res.status, waitMs, res.headers);
    await sleep(waitMs);
  }
}

/**
 * One logical stream of inference requests over reconnecting WebSockets
 * (docs/websocket.md): each request has an id; answers arrive in any order
 * and are matched by id; on a close other than 1002/1003/1009 it reconnects
 * with backoff and full jitter, with a fresh credential (a connection closes
 * with 1008 when its token expires), and sends every unanswered request
 * again. A 503 answer (a draining worker) is sent again shortly; a 429 (the
 * plan's limit) after the backoff.
 */
export class HelixWS {
  /**
   * @param {string} base wss://host:port
   * @param {string} model
   * @param {{headers(): Promise<Record<string, string>>}} creds ClientCredentials or APIKey
   */
  constructor(base, model, creds, {baseMs = 200, maxMs = 10_000, maxRetries = 8} = {}) {
    this.url = `${base.replace(/\/$/, "")}/v2/models/${encodeURIComponent(model)}/infer/ws`;
    Object.assign(this, {creds, baseMs, maxMs, maxRetries});
    this.pending = new Map();   // id -> {frame, resolve, reject, tries}
    this.nextId = 1;
    this.attempt = 0;
    this.connects = 0;          // connections opened so far
    this.closed = false;
    this.ws = null;
    this.connect();
  }

  /** Sends one request (a KServe v2 JSON inference request); resolves with its answer. */
  infer(request) {
    const id = String(request.id ?? this.nextId++);
    const frame = JSON.stringify({...request, id});
    return new Promise((resolve, reject) => {
      this.pending.set(id, {frame, resolve, reject, tries: 0});
      if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(frame);
      // otherwise it goes when the connection opens
    });
  }

  async connect() {
    if (this.closed) return;
    let headers;
    try {
      headers = await this.creds.headers();
    } catch (err) {
      return this.retry(err);
    }
    // Node may send headers; a browser would offer "helix.bearer.<token>" instead.
    const ws = new WebSocket(this.url, ["kserve.v2.helix"], {headers, perMessageDeflate: false});
    this.ws = ws;
    ws.on("open", () => {
      this.attempt = 0;
      this.connects++;
      for (const p of this.pending.values()) ws.send(p.frame);   // unanswered ids again
    });
    ws.on("unexpected-response", (_req, res) => {
      // A refused upgrade: 401/403/404 will not get better; 429/503 may.
      const status = res.statusCode;
      res.resume();
      if ([429, 503].includes(status)) return ws.terminate();   // "close" retries
      this.fail(new HelixError(`WebSocket upgrade refused: ${status}`, status));
      ws.terminate();
    });
    ws.on("error", () => {});   // "close" follows and decides
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;     // this client asks for JSON answers only
      const answer = JSON.parse(data.toString());
      const p = this.pending.get(answer.id);
      if (!p) return;           // a resent id answered twice
      if ((answer.code === 503 || answer.code === 429) && p.tries++ < this.maxRetries) {
        setTimeout(() => this.ws?.readyState === WebSocket.OPEN && this.ws.send(p.frame), backoff(p.tries, this.baseMs, this.maxMs));
        return;
      }
      this.pending.delete(answer.id);
      if (answer.error) p.reject(new HelixError(answer.error, answer.code));
      else p.resolve(answer);
    });
    ws.on("close", (code, reason) => {
      if (this.closed || this.ws !== ws) return;
      if ([1002, 1003, 1009].includes(code)) {   // retrying cannot help
        this.fail(new HelixError(`WebSocket closed ${code} ${reason}`, code));
        return;
      }
      this.retry();   // 1012 drain, 1006 network, 1008 expired token: reconnect
    });
  }

  retry(err) {
    if (this.closed) return;
    if (this.attempt >= this.maxRetries) {
      this.fail(err ?? new HelixError(`WebSocket: no connection after ${this.attempt} attempts`, 0));
      return;
    }
    setTimeout(() => this.connect(), backoff(this.attempt++, this.baseMs, this.maxMs));
  }

  fail(err) {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  close() {
    this.closed = true;
    this.ws?.close(1000);
  }
}

/** Credentials from the environment a `make run` user sources (.helix/local.env). */
export function credentialsFromEnv(env = process.env) {
  if (env.HELIX_API_KEY) return new APIKey(env.HELIX_API_KEY);
  return new ClientCredentials({tokenUrl: env.HELIX_TOKEN_URL, clientId: env.HELIX_CLIENT_ID, clientSecret: env.HELIX_CLIENT_SECRET});
}

/** Model simple's request: INPUT0 + INPUT1 (INT32 [1,16]) give OUTPUT0 (sum) and OUTPUT1 (difference). */
export function simpleRequest(a = [...Array(16).keys()], b = Array(16).fill(1)) {
  return {inputs: [
    {name: "INPUT0", datatype: "INT32", shape: [1, 16], data: a},
    {name: "INPUT1", datatype: "INT32", shape: [1, 16], data: b},
  ]};
}
