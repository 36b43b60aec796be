// Invoice handler (Sluice component ABI, world `sluice:function/handler`, QuickJS backend).
// Turns a `com.example.order.paid` event into `com.example.invoice.created`: a net amount per
// line, VAT per rate for the buyer's country and the invoice total, all in integer cents. An
// order that can never be invoiced (no lines, a country without VAT rates) is a fatal error.
import { log } from "sluice:function/log@0.1.0";

// VAT rates in basis points (2100 = 21%) per country and tax category.
const VAT = {
  NL: { standard: 2100, reduced: 900, zero: 0 },
  BE: { standard: 2100, reduced: 600, zero: 0 },
  DE: { standard: 1900, reduced: 700, zero: 0 },
  FR: { standard: 2000, reduced: 550, zero: 0 },
};

class Rejected extends Error {}

const cents = (amount, field) => {
  if (typeof amount !== "number" || !Number.isFinite(amount) || amount < 0) {
    throw new Rejected(`${field}: must be a number of at least 0`);
  }
  return Math.round(amount * 100);
};
const money = (c) => c / 100;

// The pure decision: an order in, the invoice it yields (or Rejected naming the field).
export function invoiceFor(order) {
  if (typeof order?.orderId !== "string" || order.orderId === "") {
    throw new Rejected("data.orderId: must be a non-empty string");
  }
  const rates = VAT[order.country];
  if (!rates) throw new Rejected(`data.country: no VAT rates for ${JSON.stringify(order.country)}`);
  if (!Array.isArray(order.items) || order.items.length === 0) {
    throw new Rejected("data.items: an invoice needs at least one line");
  }
  const byRate = new Map();
  const lines = order.items.map((item, i) => {
    const qty = item.qty;
    if (!Number.isInteger(qty) || qty < 1) throw new Rejected(`data.items[${i}].qty: must be a whole number of at least 1`);
    const category = item.taxCategory ?? "standard";
    const rate = rates[category];
    if (rate === undefined) throw new Rejected(`data.items[${i}].taxCategory: unknown category ${JSON.stringify(category)}`);
    const net = qty * cents(item.unitPrice, `data.items[${i}].unitPrice`);
    byRate.set(rate, (byRate.get(rate) ?? 0) + net);
    return { sku: item.sku, qty, net: money(net), vatRate: rate / 100 };
  });
  // VAT is rounded once per rate, as on a paper invoice, not per line.
  const vat = [...byRate.entries()]
    .sort(([a], [b]) => b - a)
    .map(([rate, base]) => ({ rate: rate / 100, base: money(base), vat: money(Math.round((base * rate) / 10000)) }));
  const netCents = [...byRate.values()].reduce((a, b) => a + b, 0);
  const vatCents = vat.reduce((a, v) => a + Math.round(v.vat * 100), 0);
  return {
    invoiceNumber: `INV-${order.orderId}`,
    orderId: order.orderId,
    currency: order.currency ?? "EUR",
    country: order.country,
    lines,
    vat,
    net: money(netCents),
    vatTotal: money(vatCents),
    total: money(netCents + vatCents),
  };
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
// `ok`; throwing `{ tag, val }` is the `error` variant.
export function handle(event) {
  let invoice;
  try {
    const order = JSON.parse(utf8Decode(event.data ?? new Uint8Array()));
    invoice = invoiceFor(order);
  } catch (e) {
    if (e instanceof Rejected || e instanceof SyntaxError) {
      throw { tag: "fatal", val: `order event ${event.id}: ${e.message}` };
    }
    throw { tag: "retryable", val: String(e) };
  }
  log("info", `${invoice.invoiceNumber}: ${invoice.total} ${invoice.currency}`);
  return [
    {
      id: "",
      source: "",
      type: "com.example.invoice.created",
      subject: event.subject ?? null,
      time: null,
      datacontenttype: "application/json",
      dataschema: null,
      extensions: event.extensions.filter(([k]) => k === "traceparent" || k === "tracestate"),
      data: utf8Encode(JSON.stringify(invoice)),
    },
  ];
}
