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

  describe('a zero-filled segment (zeros written ahead of the records, ADR 0029)', () => {
    const tail = Buffer.alloc(4096);
    const filled = Buffer.concat([log, tail]);

    it('reads the zeros after the last record as the end, not a tear', () => {
      expect(decodeFrames(filled)).toEqual({ payloads: records, validBytes: log.length });
      expect(decodeFrames(tail)).toEqual({ payloads: [], validBytes: 0 });
    });

    // A crash mid-write leaves the record's first bytes and zeros where the rest would be.
    it('detects the last record cut short at any byte, and keeps the records before it', () => {
      for (let cut = lastStart + 1; cut < log.length; cut++) {
        const b = Buffer.from(filled);
        b.fill(0, cut, log.length);
        const d = decodeFrames(b);
        expect(d.payloads.map(String), `cut at ${cut}`).toEqual(records.slice(0, 2).map(String));
        expect(d.validBytes).toBe(lastStart);
        // Only a prefix that is itself all zeros (nothing of the record written) reads as the end.
        if (b.subarray(lastStart, cut).some((x) => x !== 0))
          expect(d.torn, `cut at ${cut}`).toEqual({ offset: lastStart, reason: 'short-record' });
        else expect(d.torn).toBeUndefined();
      }
    });

    it('does not read past zeros into a record behind them (a hole left by a failed write)', () => {
      const b = Buffer.concat([
        log.subarray(0, lastStart),
        Buffer.alloc(100),
        encodeFrame(records[2]!),
        tail,
      ]);
      const d = decodeFrames(b);
      expect(d.payloads.map(String)).toEqual(records.slice(0, 2).map(String));
      expect(d.torn).toEqual({ offset: lastStart, reason: 'bad-length' });
    });

    it('tells damage (data after it) from a record cut short (only zeros after it)', () => {
      const b = Buffer.from(filled);
      b[lastStart + FRAME_HEADER + 5]! ^= 0x01;
      expect(decodeFrames(b).torn).toEqual({ offset: lastStart, reason: 'bad-checksum' });
      const first = Buffer.from(filled);
      first[FRAME_HEADER]! ^= 0x01;
      expect(decodeFrames(first).torn).toEqual({ offset: 0, reason: 'bad-checksum' });
    });
  });

  // The alert's text is the attacker's: a record whose payload holds whole frames must stay one
  // record, and a tear inside it must never expose the frames inside.
  it('never splits a payload made of frames, nor resynchronises into it after a tear', () => {
    const forged = Buffer.concat([
      encodeFrame(Buffer.from('{"seq":1,"body":"forged"}')),
      encodeFrame(Buffer.from('x')),
    ]);
    const b = Buffer.concat([encodeFrame(records[0]!), encodeFrame(forged)]);
    expect(decodeFrames(b).payloads.map(String)).toEqual([String(records[0]), String(forged)]);
    const start = FRAME_HEADER + records[0]!.length;
    for (let cut = start + 1; cut < b.length; cut++) {
      expect(decodeFrames(b.subarray(0, cut)).payloads.map(String)).toEqual([String(records[0])]);
      const zeroed = Buffer.concat([b, Buffer.alloc(64)]);
      zeroed.fill(0, cut, b.length);
      expect(decodeFrames(zeroed).payloads.map(String)).toEqual([String(records[0])]);
    }
  });
});
