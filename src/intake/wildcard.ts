/**
 * Wildcard matching for ResponsePolicy criteria (rule names, namespaces, output-field values).
 * Values are written by the attacker (command lines, file names), so matching must never
 * backtrack: it runs in time linear in the value (ADR 0011).
 *
 * Syntax: `*` matches any run of characters, `/` and newlines included; `?` matches exactly one
 * character (a Unicode code point, so an emoji is one); `\` makes the next character literal
 * (`\*`, `\?`, `\\`). Nothing else is special: no braces, classes or path semantics.
 *
 * How: the pattern is split on `*` into segments. The first segment must match at the start,
 * the last at the end, and the middle ones are found left to right, each at its leftmost
 * occurrence after the previous one. Taking the leftmost occurrence is always safe: it ends
 * earliest, so it leaves the most room for the segments after it (a segment of code points has
 * one end per start, and a later start never ends earlier). Each search starts where the last
 * one ended and never goes back, so a pattern costs O(|value|) search steps in total: a
 * literal segment is found with String.prototype.indexOf, a segment with `?` by a bit-parallel
 * automaton that reads each code point once (⌈|segment| / 32⌉ ≤ 32 word operations per step;
 * patterns are at most 1024 characters, a bound of the policy schema).
 *
 * Values longer than MATCH_CAP: only the first MATCH_CAP characters are read, and the unread
 * rest is assumed to be whatever would make the pattern match. So a long value matches every
 * pattern with a `*` whose head (the part before the first `*`) matches its start. This errs on
 * the side of acting: an attacker cannot hide `curl` past the cap to keep a pod out of
 * containment, at the price that a policy narrowed by an output field also matches benign
 * values longer than 64 KiB (the rule itself still had to fire).
 */

/** Characters (UTF-16 code units) of a value that are read: 64 Ki. */
export const MATCH_CAP = 65_536;

/** A run of literal text, or a number of `?` (one code point each). */
type Atom = string | number;

/** A pattern split on its unescaped `*`: segments of atoms. */
export interface CompiledWildcard {
  readonly source: string;
  /** One segment when the pattern has no `*`; n+1 segments for n stars (empty ones included). */
  readonly segments: readonly (readonly Atom[])[];
  /** Automata of the middle segments with `?`, built on first use. */
  readonly automata: Map<number, ShiftAnd>;
}

export function compileWildcard(pattern: string): CompiledWildcard {
  const segments: Atom[][] = [];
  let atoms: Atom[] = [];
  let literal = '';
  const flush = () => {
    if (literal) atoms.push(literal);
    literal = '';
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) {
      literal += pattern[++i];
    } else if (c === '*') {
      flush();
      segments.push(atoms);
      atoms = [];
    } else if (c === '?') {
      flush();
      const last = atoms[atoms.length - 1];
      if (typeof last === 'number') atoms[atoms.length - 1] = last + 1;
      else atoms.push(1);
    } else {
      literal += c;
    }
  }
  flush();
  segments.push(atoms);
  return { source: pattern, segments, automata: new Map() };
}

const isHigh = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLow = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/** Index after one code point starting at i (i < s.length). */
function nextCodePoint(s: string, i: number): number {
  return isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1)) ? i + 2 : i + 1;
}

/** Index of the start of the code point that ends at i (i > 0). */
function previousCodePoint(s: string, i: number): number {
  return isLow(s.charCodeAt(i - 1)) && i >= 2 && isHigh(s.charCodeAt(i - 2)) ? i - 2 : i - 1;
}

/** Where the segment ends when it starts at `from`, within [from, limit]; -1 if it does not match there. */
function matchForward(s: string, from: number, limit: number, atoms: readonly Atom[]): number {
  let i = from;
  for (const atom of atoms) {
    if (typeof atom === 'string') {
      if (i + atom.length > limit || !s.startsWith(atom, i)) return -1;
      i += atom.length;
    } else {
      for (let n = 0; n < atom; n++) {
        if (i >= limit) return -1;
        i = nextCodePoint(s, i);
      }
      if (i > limit) return -1;
    }
  }
  return i;
}

/** Where the segment starts when it ends at `to`, within [floor, to]; -1 if it does not match there. */
function matchBackward(s: string, floor: number, to: number, atoms: readonly Atom[]): number {
  let i = to;
  for (let k = atoms.length - 1; k >= 0; k--) {
    const atom = atoms[k]!;
    if (typeof atom === 'string') {
      if (i - atom.length < floor || !s.startsWith(atom, i - atom.length)) return -1;
      i -= atom.length;
    } else {
      for (let n = 0; n < atom; n++) {
        if (i <= floor) return -1;
        i = previousCodePoint(s, i);
      }
      if (i < floor) return -1;
    }
  }
  return i;
}

/**
 * A segment with `?` as a bit-parallel automaton (Shift-And): bit k of the state says the
 * segment's first k+1 code points match the code points just read. One step per code point of
 * the value, ⌈segment length / 32⌉ word operations each, whatever the value holds.
 */
interface ShiftAnd {
  /** Length of the segment in code points. */
  length: number;
  words: number;
  /** State bits allowed after reading a code point, for code points below 128. */
  ascii: (Uint32Array | undefined)[];
  other: Map<number, Uint32Array>;
  /** Positions of `?`: what any other code point allows. */
  any: Uint32Array;
}

function shiftAndFor(atoms: readonly Atom[]): ShiftAnd {
  const codePoints: (number | undefined)[] = [];
  for (const atom of atoms) {
    if (typeof atom === 'number') for (let n = 0; n < atom; n++) codePoints.push(undefined);
    else for (const ch of atom) codePoints.push(ch.codePointAt(0)!);
  }
  const words = Math.ceil(codePoints.length / 32);
  const any = new Uint32Array(words);
  codePoints.forEach((cp, k) => {
    if (cp === undefined) any[k >>> 5]! |= 1 << (k & 31);
  });
  const ascii: (Uint32Array | undefined)[] = new Array<Uint32Array | undefined>(128).fill(undefined);
  const other = new Map<number, Uint32Array>();
  codePoints.forEach((cp, k) => {
    if (cp === undefined) return;
    let mask = cp < 128 ? ascii[cp] : other.get(cp);
    if (!mask) {
      mask = Uint32Array.from(any);
      if (cp < 128) ascii[cp] = mask;
      else other.set(cp, mask);
    }
    mask[k >>> 5]! |= 1 << (k & 31);
  });
  return { length: codePoints.length, words, ascii, other, any };
}

function shiftAndFind(s: string, from: number, limit: number, m: ShiftAnd): number {
  const { words, ascii, other, any } = m;
  const topBit = 1 << ((m.length - 1) & 31);
  if (words === 1) {
    // The common case (segments of up to 32 code points) in one integer.
    const anyBits = any[0]!;
    let state = 0;
    for (let i = from; i < limit;) {
      const cp = s.codePointAt(i)!;
      i += cp > 0xffff ? 2 : 1;
      const mask = cp < 128 ? ascii[cp] : other.get(cp);
      state = ((state << 1) | 1) & (mask ? mask[0]! : anyBits);
      if (state & topBit) return i;
    }
    return -1;
  }
  const state = new Uint32Array(words);
  const topWord = words - 1;
  // Bits move up one place per step, so only the words up to one above the highest non-zero
  // word can change: the rest are skipped (a value that breaks the segment early stays cheap).
  let active = 0;
  for (let i = from; i < limit;) {
    const cp = s.codePointAt(i)!;
    i += cp > 0xffff ? 2 : 1;
    const mask = (cp < 128 ? ascii[cp] : other.get(cp)) ?? any;
    let carry = 1;
    let highest = 0;
    for (let w = 0; w <= active; w++) {
      const v = state[w]!;
      const next = ((v << 1) | carry) & mask[w]!;
      state[w] = next;
      if (next !== 0) highest = w;
      carry = v >>> 31;
    }
    if (state[topWord]! & topBit) return i;
    active = Math.min(highest + 1, topWord);
  }
  return -1;
}

/** The end of the leftmost occurrence of a segment in s[from, limit), or -1. */
function findSegment(
  s: string,
  from: number,
  limit: number,
  atoms: readonly Atom[],
  automaton: () => ShiftAnd,
): number {
  if (atoms.length === 1 && typeof atoms[0] === 'string') {
    const at = s.indexOf(atoms[0], from);
    return at >= 0 && at + atoms[0].length <= limit ? at + atoms[0].length : -1;
  }
  // A segment of fixed length in code points: the earliest end is the leftmost start.
  return shiftAndFind(s, from, limit, automaton());
}

/** Whether the whole value matches the pattern (see the header for the cap). */
export function wildcardMatch(compiled: CompiledWildcard, value: string): boolean {
  const { segments } = compiled;
  const first = segments[0]!;
  if (value.length > MATCH_CAP) {
    // The unread rest could complete any pattern that has a `*` and whose head fits the start.
    return segments.length > 1 && matchForward(value, 0, MATCH_CAP, first) >= 0;
  }
  if (segments.length === 1) return matchForward(value, 0, value.length, first) === value.length;
  let pos = matchForward(value, 0, value.length, first);
  if (pos < 0) return false;
  const tailStart = matchBackward(value, pos, value.length, segments[segments.length - 1]!);
  if (tailStart < 0) return false;
  for (let k = 1; k < segments.length - 1; k++) {
    const atoms = segments[k]!;
    if (atoms.length === 0) continue;
    pos = findSegment(value, pos, tailStart, atoms, () => automatonOf(compiled, k));
    if (pos < 0) return false;
  }
  return true;
}

function automatonOf(compiled: CompiledWildcard, k: number): ShiftAnd {
  let automaton = compiled.automata.get(k);
  if (!automaton) compiled.automata.set(k, (automaton = shiftAndFor(compiled.segments[k]!)));
  return automaton;
}

/** Compiled patterns are cached: policies are few, alerts are many. */
const cache = new Map<string, CompiledWildcard>();

/** wildcardMatch with the pattern compiled once. */
export function matches(pattern: string, value: string): boolean {
  let compiled = cache.get(pattern);
  if (!compiled) {
    if (cache.size >= 10_000) cache.clear();
    compiled = compileWildcard(pattern);
    cache.set(pattern, compiled);
  }
  return wildcardMatch(compiled, value);
}
