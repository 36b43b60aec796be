// Signup enrichment handler (Sluice command ABI, AssemblyScript with @assemblyscript/wasi-shim).
// Reads a `com.example.user.signedup` CloudEvent from stdin and emits
// `com.example.user.enriched`: the normalised email, its domain and whether that is a
// free-mail provider, the first name, initials and a greeting in the user's language.
// A signup without a usable email address can never be enriched: exit 65 (fatal).
import { Json, Kind, parse, parseError, quote } from "./json";

const EX_DATAERR = 65;
const MAX_EVENT = 1 << 20;
const FREEMAIL = ["gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "proton.me", "gmx.de"];

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

/** Greeting in the user's language; `product` names what they signed up for. */
export function greeting(language: string, firstName: string, product: string): string {
  if (language == "nl") return "Welkom bij " + product + ", " + firstName + "!";
  if (language == "de") return "Willkommen bei " + product + ", " + firstName + "!";
  if (language == "fr") return "Bienvenue sur " + product + ", " + firstName + " !";
  if (language == "es") return "¡Te damos la bienvenida a " + product + ", " + firstName + "!";
  return "Welcome to " + product + ", " + firstName + "!";
}

/** First letter of every name part, upper-cased: "ada king-lovelace" is "AK". */
export function initials(name: string): string {
  const parts = name.split(" ");
  let out = "";
  for (let i = 0; i < parts.length && out.length < 3; i++) {
    if (parts[i].length > 0) out += parts[i].charAt(0).toUpperCase();
  }
  return out;
}

function main(): void {
  const input = readStdin();
  if (input == null) { fatal("event larger than 1 MiB"); return; }
  const event = parse(input);
  if (event == null || event.kind != Kind.Object) { fatal("stdin is not a JSON CloudEvent: " + parseError); return; }
  const data = event.get("data");
  if (data == null || data.kind != Kind.Object) { fatal("data: must be an object"); return; }

  const userId = data.getString("userId");
  if (userId == null || userId.length == 0) { fatal("data.userId: must be a non-empty string"); return; }
  const rawEmail = data.getString("email");
  if (rawEmail == null) { fatal("data.email: must be a string"); return; }
  const email = rawEmail.trim().toLowerCase();
  const at = email.lastIndexOf("@");
  const domain = at > 0 ? email.substring(at + 1) : "";
  if (at <= 0 || domain.indexOf(".") <= 0 || domain.endsWith(".") || email.indexOf(" ") >= 0) {
    fatal("data.email: " + quote(rawEmail) + " is not an email address");
    return;
  }

  let name = data.getString("name");
  if (name == null) name = "";
  // Without a name, greet by the mailbox: "ada.l@…" becomes "ada.l".
  let firstName = name.trim();
  const space = firstName.indexOf(" ");
  if (space > 0) firstName = firstName.substring(0, space);
  if (firstName.length == 0) firstName = email.substring(0, at);

  let locale = data.getString("locale");
  if (locale == null || locale.length < 2) locale = "en";
  const language = locale.substring(0, 2).toLowerCase();
  const product = process.env.has("PRODUCT_NAME") ? process.env.get("PRODUCT_NAME") : "Sluice";

  let out = "{\"type\":\"com.example.user.enriched\"";
  const subject = event.getString("subject");
  if (subject != null) out += ",\"subject\":" + quote(subject);
  out += ",\"datacontenttype\":\"application/json\",\"data\":{";
  out += "\"userId\":" + quote(userId);
  out += ",\"email\":" + quote(email);
  out += ",\"emailDomain\":" + quote(domain);
  out += ",\"freemail\":" + (FREEMAIL.includes(domain) ? "true" : "false");
  out += ",\"firstName\":" + quote(firstName);
  out += ",\"initials\":" + quote(initials(name.trim()));
  out += ",\"language\":" + quote(language);
  out += ",\"greeting\":" + quote(greeting(language, firstName, product));
  out += "}}\n";
  process.stdout.write(out);
  process.stderr.write("info: enriched " + userId + " (" + domain + ")\n");
}

main();
