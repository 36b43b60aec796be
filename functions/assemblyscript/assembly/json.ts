// A small JSON reader and string writer for the AssemblyScript example. AssemblyScript has
// no union types and no built-in JSON, so a value is one class tagged by `kind`.

export enum Kind { Null, Bool, Number, String, Array, Object }

export class Json {
  kind: Kind = Kind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  items: Json[] = [];
  keys: string[] = [];

  /** The member `key` of an object, or null. */
  get(key: string): Json | null {
    if (this.kind != Kind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  /** The member `key` when it is a string, else null. */
  getString(key: string): string | null {
    const v = this.get(key);
    if (v == null || v.kind != Kind.String) return null;
    return v.str;
  }
}

/** Parses `text`; on malformed input returns null and leaves the reason in `parseError`. */
export let parseError = "";

export function parse(text: string): Json | null {
  parseError = "";
  const p = new Parser(text);
  const v = p.value(0);
  if (v == null) return null;
  p.ws();
  if (p.i < text.length) {
    parseError = "trailing characters after the value";
    return null;
  }
  return v;
}

class Parser {
  i: i32 = 0;
  constructor(public s: string) {}

  fail(message: string): Json | null {
    if (parseError.length == 0) parseError = message + " at " + this.i.toString();
    return null;
  }

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.i++;
    }
  }

  literal(word: string): bool {
    if (this.s.substr(this.i, word.length) != word) return false;
    this.i += word.length;
    return true;
  }

  value(depth: i32): Json | null {
    if (depth > 64) return this.fail("nested too deeply");
    this.ws();
    if (this.i >= this.s.length) return this.fail("unexpected end of input");
    const c = this.s.charCodeAt(this.i);
    const v = new Json();
    if (c == 0x7b || c == 0x5b) { // { or [
      const object = c == 0x7b;
      const close = object ? 0x7d : 0x5d;
      v.kind = object ? Kind.Object : Kind.Array;
      this.i++;
      this.ws();
      if (this.i < this.s.length && this.s.charCodeAt(this.i) == close) { this.i++; return v; }
      while (true) {
        if (object) {
          this.ws();
          const key = this.string();
          if (key == null) return null;
          this.ws();
          if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 0x3a) return this.fail("expected ':'");
          this.i++;
          v.keys.push(key);
        }
        const item = this.value(depth + 1);
        if (item == null) return null;
        v.items.push(item);
        this.ws();
        if (this.i < this.s.length && this.s.charCodeAt(this.i) == 0x2c) { this.i++; continue; }
        if (this.i < this.s.length && this.s.charCodeAt(this.i) == close) { this.i++; return v; }
        return this.fail("expected ',' or a closing bracket");
      }
    }
    if (c == 0x22) {
      const str = this.string();
      if (str == null) return null;
      v.kind = Kind.String;
      v.str = str;
      return v;
    }
    if (this.literal("true")) { v.kind = Kind.Bool; v.bool = true; return v; }
    if (this.literal("false")) { v.kind = Kind.Bool; return v; }
    if (this.literal("null")) return v;
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = this.i;
      while (this.i < this.s.length) {
        const d = this.s.charCodeAt(this.i);
        if ((d >= 0x30 && d <= 0x39) || d == 0x2d || d == 0x2b || d == 0x2e || d == 0x65 || d == 0x45) this.i++;
        else break;
      }
      v.kind = Kind.Number;
      v.num = parseFloat(this.s.substring(start, this.i));
      if (isNaN(v.num)) return this.fail("bad number");
      return v;
    }
    return this.fail("unexpected character");
  }

  string(): string | null {
    if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 0x22) {
      this.fail("expected a string");
      return null;
    }
    this.i++;
    const parts: string[] = [];
    let start = this.i;
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c == 0x22) {
        parts.push(this.s.substring(start, this.i));
        this.i++;
        return parts.join("");
      }
      if (c < 0x20) { this.fail("control character in string"); return null; }
      if (c != 0x5c) { this.i++; continue; }
      parts.push(this.s.substring(start, this.i));
      const e = this.s.charCodeAt(this.i + 1);
      this.i += 2;
      if (e == 0x22) parts.push("\"");
      else if (e == 0x5c) parts.push("\\");
      else if (e == 0x2f) parts.push("/");
      else if (e == 0x62) parts.push("\b");
      else if (e == 0x66) parts.push("\f");
      else if (e == 0x6e) parts.push("\n");
      else if (e == 0x72) parts.push("\r");
      else if (e == 0x74) parts.push("\t");
      else if (e == 0x75) {
        // Strings are UTF-16 here, so a \u escape (and each half of a surrogate pair) is
        // exactly one code unit.
        let unit = 0;
        for (let k = 0; k < 4; k++) {
          const h = this.i + k < this.s.length ? hexDigit(this.s.charCodeAt(this.i + k)) : -1;
          if (h < 0) { this.fail("bad \\u escape"); return null; }
          unit = unit << 4 | h;
        }
        parts.push(String.fromCharCode(unit));
        this.i += 4;
      } else { this.fail("bad escape"); return null; }
      start = this.i;
    }
    this.fail("unterminated string");
    return null;
  }
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** `s` as a JSON string literal, quotes included. */
export function quote(s: string): string {
  const parts: string[] = ["\""];
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c != 0x22 && c != 0x5c && c >= 0x20) continue;
    parts.push(s.substring(start, i));
    if (c == 0x22) parts.push("\\\"");
    else if (c == 0x5c) parts.push("\\\\");
    else if (c == 0x0a) parts.push("\\n");
    else if (c == 0x0d) parts.push("\\r");
    else if (c == 0x09) parts.push("\\t");
    else parts.push("\\u00" + (c < 0x10 ? "0" : "") + c.toString(16));
    start = i + 1;
  }
  parts.push(s.substring(start));
  parts.push("\"");
  return parts.join("");
}
