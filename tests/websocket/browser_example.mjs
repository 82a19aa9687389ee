// Runs the browser example of docs/websocket.md ("Browser JavaScript", the
// class without its usage lines) in Node, which has the browser's WebSocket
// (Node 22; Node 20 with --experimental-websocket): node browser_example.mjs
// DOC URL COUNT, the token read from $HELIX_TOKEN_FILE on every connect.
import fs from "node:fs";
const doc = fs.readFileSync(process.argv[2], "utf8");
const m = doc.match(/### Browser JavaScript\n\n```js\n([\s\S]*?)```/);
const src = m[1].split("// Usage:")[0];
const HelixWS = new Function(src + "; return HelixWS;")();
const [url, count] = [process.argv[3], Number(process.argv[4])];
const c = new HelixWS(url, "simple", async () => fs.readFileSync(process.env.HELIX_TOKEN_FILE, "utf8").trim());
let ok = 0;
await Promise.all(Array.from({length: 4}, async (_, w) => {
  for (let i = w; i < count; i += 4) {
    const a = await c.infer({inputs: [
      {name: "INPUT0", datatype: "INT32", shape: [1, 16], data: Array.from({length: 16}, (_, k) => i + k)},
      {name: "INPUT1", datatype: "INT32", shape: [1, 16], data: Array(16).fill(1)}]});
    const out = a.outputs.find(o => o.name === "OUTPUT0").data;
    if (out[0] !== i + 1) throw new Error(`request ${i}: ${out}`);
    ok++;
    await new Promise(r => setTimeout(r, 100));
  }
}));
c.close();
console.log(`answered ${ok}`);
