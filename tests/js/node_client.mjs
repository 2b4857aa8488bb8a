// MQTT.js in Node: connect, subscribe, publish, receive the message back.
// Driven by tests/e2e/test_mqttjs.py. One argument, a JSON object:
//   {"url": "ws://127.0.0.1:PORT/mqtt" | "wss://...", "topic": "...", "payload": "...",
//    "clientId": "...", "protocolVersion": 4 | 5, "ca": "/path/ca.pem" (optional),
//    "timeoutMs": 15000}
// Prints one JSON line: {"ok": true, "topic", "payload", "qos", "connack": {...}}
// or {"ok": false, "error": "..."}; exits 0 or 1.
import fs from 'node:fs';
import mqtt from 'mqtt';

const opts = JSON.parse(process.argv[2]);
const timeoutMs = opts.timeoutMs ?? 15000;

function finish(result, client) {
  process.stdout.write(JSON.stringify(result) + '\n');
  const code = result.ok ? 0 : 1;
  if (client) {
    client.end(false, {}, () => process.exit(code));
    setTimeout(() => process.exit(code), 2000).unref();
  } else {
    process.exit(code);
  }
}

const connectOptions = {
  clientId: opts.clientId,
  protocolVersion: opts.protocolVersion ?? 5,
  clean: true,
  reconnectPeriod: 0, // a failed connect is an answer, not something to retry
  connectTimeout: timeoutMs,
};
if (opts.ca) {
  connectOptions.ca = fs.readFileSync(opts.ca);
}
const client = mqtt.connect(opts.url, connectOptions);
const timer = setTimeout(() => finish({ ok: false, error: `no message within ${timeoutMs} ms` }, client), timeoutMs);
let connack = null;

client.on('connect', async (packet) => {
  connack = { sessionPresent: packet.sessionPresent, reasonCode: packet.reasonCode ?? packet.returnCode ?? 0 };
  try {
    const granted = await client.subscribeAsync(opts.topic, { qos: 1 });
    if (granted[0].qos > 2) {
      throw new Error(`SUBSCRIBE refused: ${JSON.stringify(granted)}`);
    }
    await client.publishAsync(opts.topic, opts.payload, { qos: 1 });
  } catch (e) {
    clearTimeout(timer);
    finish({ ok: false, error: String(e && e.message || e) }, client);
  }
});

client.on('message', (topic, payload, packet) => {
  clearTimeout(timer);
  finish({ ok: true, topic, payload: payload.toString(), qos: packet.qos, connack }, client);
});

client.on('error', (e) => {
  clearTimeout(timer);
  finish({ ok: false, error: String(e && e.message || e), code: e && e.code }, null);
});
