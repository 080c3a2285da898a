import { randomBytes } from 'node:crypto';

/**
 * JSON.parse that keeps integers beyond 2^53 exact, as bigint. Falco's evt.time is an int64 of
 * nanoseconds (about 1.7e18): JSON.parse would round it, losing the order of events that an
 * investigator relies on.
 *
 * A full JavaScript JSON parser (lossless-json) costs five times JSON.parse on the webhook's hot
 * path, and Node 24's reviver with source text (`context.source`) still costs twice this
 * (bench/json-exact.ts, ADR 0016). So a scanner that only
 * knows where strings start and end finds the long integer literals outside them, wraps each in
 * a string carrying a random per-process marker that no client can guess, and the native
 * parser does the rest; marked strings are turned into bigints afterwards. The property test
 * checks it against lossless-json.
 */
const MARK = `\u0000${randomBytes(12).toString('hex')}:`;
const MARK_JSON = JSON.stringify(MARK).slice(1, -1);

export function parseJsonExact(text: string): unknown {
  const spans = longIntegers(text);
  if (!spans.length) return JSON.parse(text);
  let marked = '';
  let at = 0;
  for (const [start, end] of spans) {
    marked += `${text.slice(at, start)}"${MARK_JSON}${text.slice(start, end)}"`;
    at = end;
  }
  return unmark(JSON.parse(marked + text.slice(at)), { left: spans.length });
}

/** [start, end) of integer literals, outside strings, too long to be safe as a double. */
function longIntegers(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i = stringEnd(text, i);
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      let integer = true;
      while (i + 1 < text.length && isNumberChar(text.charCodeAt(i + 1))) {
        i++;
        const d = text.charCodeAt(i);
        if (d === 0x2e || d === 0x65 || d === 0x45) integer = false; // . e E
      }
      // Only a well-formed integer literal in a value's place is wrapped: anything else (a
      // fraction, an exponent, a number where a key belongs) is left for JSON.parse to refuse.
      if (integer && i + 1 - start >= 16) {
        const token = text.slice(start, i + 1);
        if (INTEGER.test(token) && !Number.isSafeInteger(Number(token)) && !followedByColon(text, i + 1))
          spans.push([start, i + 1]);
      }
    }
  }
  return spans;
}

/** Whether the next character after whitespace is a colon: the token stands where a key must. */
function followedByColon(text: string, from: number): boolean {
  let i = from;
  while (
    i < text.length &&
    (text.charCodeAt(i) === 0x20 ||
      text.charCodeAt(i) === 0x0a ||
      text.charCodeAt(i) === 0x0d ||
      text.charCodeAt(i) === 0x09)
  )
    i++;
  return text.charCodeAt(i) === 0x3a;
}

/**
 * The index of the quote closing the string opened at `open` (text.length when none does): the
 * next quote preceded by an even number of backslashes. indexOf skips the string's body at
 * memory speed; most of a Falco event is strings (the output line).
 */
function stringEnd(text: string, open: number): number {
  for (let q = text.indexOf('"', open + 1); q !== -1; q = text.indexOf('"', q + 1)) {
    let backslashes = 0;
    while (text.charCodeAt(q - 1 - backslashes) === 0x5c /* \ */) backslashes++;
    if (backslashes % 2 === 0) return q;
  }
  return text.length;
}

const INTEGER = /^-?(0|[1-9]\d*)$/;

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

/** Replaces marked strings by bigints; stops walking once all `left` of them are found. */
function unmark(value: unknown, found: { left: number }): unknown {
  if (typeof value === 'string') {
    if (!value.startsWith(MARK)) return value;
    found.left--;
    try {
      return BigInt(value.slice(MARK.length));
    } catch {
      return value; // not an integer after all (malformed JSON would have failed to parse)
    }
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length && found.left > 0; i++) value[i] = unmark(value[i], found);
    return value;
  }
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      if (found.left === 0) break;
      const before = obj[key];
      const after = unmark(before, found);
      if (after === before) continue;
      // defineProperty, not assignment, for an own "__proto__" key: it must stay a plain key.
      if (key === '__proto__')
        Object.defineProperty(obj, key, {
          value: after,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      else obj[key] = after;
    }
  }
  return value;
}
