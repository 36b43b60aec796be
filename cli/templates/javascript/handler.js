// {{name}}: a Sluice handler (component ABI, world `sluice:function/handler` in wit/, built by
// jco with its QuickJS backend). Greets whoever a `com.example.hello` event names; an event
// without `data.name` is a fatal error, which sends it to the dead-letter bus without retries.
import { log } from "sluice:function/log@0.1.0";

// The decision, apart from input and output: the greeting, or an Error naming the field.
export function greeting(data) {
  if (typeof data?.name !== "string" || data.name === "") {
    throw new Error("data.name: must be a non-empty string");
  }
  return `Hello, ${data.name}!`;
}

// QuickJS has no TextEncoder/TextDecoder; event data crosses the boundary as UTF-8 bytes.
function utf8Decode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i++];
    let cp;
    if (b < 0x80) cp = b;
    else if (b < 0xe0) cp = ((b & 0x1f) << 6) | (bytes[i++] & 0x3f);
    else if (b < 0xf0) cp = ((b & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    else cp = ((b & 0x07) << 18) | ((bytes[i++] & 0x3f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    s += String.fromCodePoint(cp);
  }
  return s;
}

function utf8Encode(s) {
  const out = [];
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}

// The component export: `handle: func(event) -> result<list<event>, error>`. Returning is
// `ok`; throwing `{ tag, val }` is the `error` variant: `fatal` dead-letters the event now,
// `retryable` tries it again with backoff.
export function handle(event) {
  let text;
  try {
    text = greeting(JSON.parse(utf8Decode(event.data ?? new Uint8Array())));
  } catch (e) {
    throw { tag: "fatal", val: e.message };
  }
  log("info", text);
  return [
    {
      // Empty id and source: the host fills a fresh id and this Function's source.
      id: "",
      source: "",
      type: "com.example.greeting",
      subject: event.subject ?? null,
      time: null,
      datacontenttype: "application/json",
      dataschema: null,
      // Keep the trace going: the reply belongs to the same trace as the event.
      extensions: event.extensions.filter(([k]) => k === "traceparent" || k === "tracestate"),
      data: utf8Encode(JSON.stringify({ greeting: text })),
    },
  ];
}
