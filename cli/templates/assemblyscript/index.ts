// {{name}}: a Sluice handler (command ABI, AssemblyScript with @assemblyscript/wasi-shim). Reads
// a `com.example.hello` CloudEvent as JSON on stdin and writes the reply,
// `com.example.greeting`, as one JSON line on stdout. An event without `data.name` can never
// succeed: exit 65, fatal, and the last `error:` line on stderr says why; the event goes to
// the dead-letter bus without retries. json.ts: a small JSON reader (shared with the example).
import { Kind, parse, parseError, quote } from "./json";

const EX_DATAERR = 65;
const MAX_EVENT = 1 << 20;

function fatal(message: string): void {
  process.stderr.write("error: " + message + "\n");
  process.exit(EX_DATAERR);
}

function readStdin(): string | null {
  const chunks: ArrayBuffer[] = [];
  let total = 0;
  while (true) {
    const chunk = new ArrayBuffer(16384);
    const n = process.stdin.read(chunk);
    if (n <= 0) break;
    chunks.push(chunk.slice(0, n));
    total += n;
    if (total > MAX_EVENT) return null;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    all.set(Uint8Array.wrap(chunks[i]), at);
    at += chunks[i].byteLength;
  }
  return String.UTF8.decode(all.buffer);
}

/** The decision, apart from input and output. */
export function greeting(name: string): string {
  return "Hello, " + name + "!";
}

function main(): void {
  const input = readStdin();
  if (input == null) { fatal("event larger than 1 MiB"); return; }
  const event = parse(input);
  if (event == null || event.kind != Kind.Object) { fatal("stdin is not a JSON CloudEvent: " + parseError); return; }
  const data = event.get("data");
  const name = data != null && data.kind == Kind.Object ? data.getString("name") : null;
  if (name == null || name.length == 0) { fatal("data.name: must be a non-empty string"); return; }
  const text = greeting(name);

  let out = "{\"type\":\"com.example.greeting\"";
  const subject = event.getString("subject");
  if (subject != null) out += ",\"subject\":" + quote(subject);
  out += ",\"datacontenttype\":\"application/json\",\"data\":{\"greeting\":" + quote(text) + "}}\n";
  process.stdout.write(out);
  process.stderr.write("info: " + text + "\n");
}

main();
