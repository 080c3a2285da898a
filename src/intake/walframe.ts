import { crc32 } from 'node:zlib';

/**
 * The write-ahead log's framing (ADR 0014): each record is
 *
 *   u32 LE payload length | u32 LE CRC-32 of the payload | payload
 *
 * so a record cut short by a crash mid-append (a torn tail) or damaged on disk is recognised
 * and never handed to replay as garbage. Pure: the file handling is in wal.ts.
 *
 * A segment may end in zeros: the log writes zeros ahead of its records so that a record's
 * sync has no file size to commit (ADR 0029). A zero length where a record would start, with
 * only zeros after it, is the end of the records; segments written before that end at their last
 * record, and read the same. A payload never holds a zero byte (it is JSON, which escapes NUL),
 * so zeros inside a record are bytes never written: a record cut short.
 */

export const FRAME_HEADER = 8;
/** Larger than any record the intake writes (a case body is a few KiB); guards a corrupt length. */
export const MAX_RECORD = 4 * 1024 * 1024;

export function encodeFrame(payload: Buffer): Buffer {
  if (payload.length === 0 || payload.length > MAX_RECORD)
    throw new RangeError(`a record must have 1..${MAX_RECORD} bytes, not ${payload.length}`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(crc32(payload), 4);
  payload.copy(frame, FRAME_HEADER);
  return frame;
}

/** encodeFrame(Buffer.from(text)) in one allocation and one copy: the log's hot path. */
export function encodeTextFrame(text: string): Buffer {
  const length = Buffer.byteLength(text, 'utf8');
  if (length === 0 || length > MAX_RECORD)
    throw new RangeError(`a record must have 1..${MAX_RECORD} bytes, not ${length}`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER + length);
  frame.writeUInt32LE(length, 0);
  frame.write(text, FRAME_HEADER, 'utf8');
  frame.writeUInt32LE(crc32(frame.subarray(FRAME_HEADER)), 4);
  return frame;
}

export interface DecodedFrames {
  payloads: Buffer[];
  /** Bytes covered by whole, intact records. */
  validBytes: number;
  /** Why decoding stopped before the end, when it did. */
  torn?: { offset: number; reason: 'short-header' | 'short-record' | 'bad-length' | 'bad-checksum' };
}

/**
 * Decodes records from the start of a segment, stopping at the first one that is incomplete or
 * fails its checksum: nothing after it is trusted (its length field may be garbage).
 */
export function decodeFrames(buf: Buffer): DecodedFrames {
  const payloads: Buffer[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const torn = (reason: NonNullable<DecodedFrames['torn']>['reason']): DecodedFrames => ({
      payloads,
      validBytes: offset,
      torn: { offset, reason },
    });
    if (zerosFrom(buf, offset)) break;
    if (buf.length - offset < FRAME_HEADER) return torn('short-header');
    const length = buf.readUInt32LE(offset);
    if (length === 0 || length > MAX_RECORD) return torn('bad-length');
    if (buf.length - offset - FRAME_HEADER < length) return torn('short-record');
    const payload = buf.subarray(offset + FRAME_HEADER, offset + FRAME_HEADER + length);
    if (crc32(payload) !== buf.readUInt32LE(offset + 4)) {
      // The record's first bytes, then nothing written: cut short in a zero-filled segment.
      const firstZero = payload.indexOf(0);
      const cutShort = firstZero >= 0 && zerosFrom(buf, offset + FRAME_HEADER + firstZero);
      return torn(cutShort ? 'short-record' : 'bad-checksum');
    }
    payloads.push(payload);
    offset += FRAME_HEADER + length;
  }
  return { payloads, validBytes: offset };
}

/** Only zero bytes from `offset` to the end (none at all counts too). */
function zerosFrom(buf: Buffer, offset: number): boolean {
  for (let i = offset; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}
