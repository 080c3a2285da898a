import { describe, expect, it } from 'vitest';
import {
  decodeFrames,
  encodeFrame,
  encodeTextFrame,
  FRAME_HEADER,
  MAX_RECORD,
} from '../../../src/intake/walframe.js';

const records = ['{"seq":1}', '{"seq":2,"body":"é ü"}', 'x'.repeat(300)].map((s) => Buffer.from(s));
const log = Buffer.concat(records.map(encodeFrame));
const lastStart = log.length - encodeFrame(records[2]!).length;

describe('write-ahead log framing', () => {
  it('decodes what it encodes, in order', () => {
    const d = decodeFrames(log);
    expect(d.payloads.map(String)).toEqual(records.map(String));
    expect(d.validBytes).toBe(log.length);
    expect(d.torn).toBeUndefined();
  });

  it('encodes text exactly as it encodes its UTF-8 bytes', () => {
    for (const text of ['{"seq":1}', '{"seq":2,"body":"é ü \u{1F600}"}', 'x'.repeat(300)])
      expect(encodeTextFrame(text).equals(encodeFrame(Buffer.from(text)))).toBe(true);
    expect(() => encodeTextFrame('')).toThrow(RangeError);
    expect(() => encodeTextFrame('é'.repeat(MAX_RECORD / 2 + 1))).toThrow(RangeError);
  });

  it('refuses an empty or oversized payload', () => {
    expect(() => encodeFrame(Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeFrame(Buffer.alloc(MAX_RECORD + 1))).toThrow(RangeError);
  });

  // A crash mid-append leaves any prefix of the last record: every one must be detected.
  it('detects a torn last record cut at any byte, and keeps the records before it', () => {
    for (let cut = lastStart + 1; cut < log.length; cut++) {
      const d = decodeFrames(log.subarray(0, cut));
      expect(d.payloads.map(String), `cut at ${cut}`).toEqual(records.slice(0, 2).map(String));
      expect(d.validBytes).toBe(lastStart);
      expect(d.torn?.offset).toBe(lastStart);
      expect(d.torn?.reason).toBe(cut - lastStart < FRAME_HEADER ? 'short-header' : 'short-record');
    }
  });

  const damaged: Array<[string, (b: Buffer) => void, string]> = [
    ['a flipped payload bit', (b) => (b[lastStart + FRAME_HEADER + 5]! ^= 0x01), 'bad-checksum'],
    ['a flipped checksum bit', (b) => (b[lastStart + 4]! ^= 0x80), 'bad-checksum'],
    ['a zero length (a zero-filled tail)', (b) => b.writeUInt32LE(0, lastStart), 'bad-length'],
    ['a length past the limit', (b) => b.writeUInt32LE(MAX_RECORD + 1, lastStart), 'bad-length'],
    ['a length past the end', (b) => b.writeUInt32LE(10_000, lastStart), 'short-record'],
    ['a shorter length', (b) => b.writeUInt32LE(299, lastStart), 'bad-checksum'],
  ];
  it.each(damaged)('stops at %s, never returning garbage', (_name, damage, reason) => {
    const b = Buffer.from(log);
    damage(b);
    const d = decodeFrames(b);
    expect(d.payloads.map(String)).toEqual(records.slice(0, 2).map(String));
    expect(d.torn).toEqual({ offset: lastStart, reason });
  });

  it('trusts nothing after a damaged record, even intact records', () => {
    const b = Buffer.from(log);
    b[FRAME_HEADER]! ^= 0x01; // the first record's payload
    expect(decodeFrames(b)).toEqual({
      payloads: [],
      validBytes: 0,
      torn: { offset: 0, reason: 'bad-checksum' },
    });
  });
});
