import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TransferChecksum } from '../../../src/evidence/transfer-checksum.js';

/** S3's definition, computed the slow way: split the object into parts and checksum each. */
function reference(data: Buffer, partSize: number): { single: string; multipart: string } {
  const be = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length || parts.length === 0; at += partSize)
    parts.push(be(crc32(data.subarray(at, at + partSize))));
  return {
    single: be(crc32(data)).toString('base64'),
    multipart: `${be(crc32(Buffer.concat(parts))).toString('base64')}-${parts.length}`,
  };
}

describe('TransferChecksum', () => {
  const partSize = 16;
  it.each([
    { size: 0, chunks: [0] },
    { size: 1, chunks: [1] },
    { size: 15, chunks: [7, 8] },
    { size: 16, chunks: [16] },
    { size: 17, chunks: [17] },
    { size: 32, chunks: [5, 27] },
    { size: 33, chunks: [1, 1, 30, 1] },
    { size: 100, chunks: [100] },
  ])("$size bytes in chunks $chunks agree with S3's definition", ({ size, chunks }) => {
    const data = randomBytes(size);
    const t = new TransferChecksum(partSize);
    let at = 0;
    for (const n of chunks) {
      t.update(data.subarray(at, at + n));
      at += n;
    }
    const want = reference(data, partSize);
    expect(t.expected('single')).toBe(want.single);
    expect(t.expected('multipart')).toBe(want.multipart);
    expect(t.mismatch(want.single)).toBeUndefined();
    expect(t.mismatch(want.multipart)).toBeUndefined();
  });

  it('a store that kept other bytes, fewer bytes or other parts does not match', () => {
    const data = randomBytes(40);
    const t = new TransferChecksum(partSize);
    t.update(data);
    const flipped = Buffer.from(data);
    flipped[20]! ^= 1;
    expect(t.mismatch(reference(flipped, partSize).single)).toMatch(/is not/);
    expect(t.mismatch(reference(flipped, partSize).multipart)).toMatch(/is not/);
    expect(t.mismatch(reference(data.subarray(0, 39), partSize).single)).toMatch(/is not/);
    // The same bytes cut at other part boundaries give another composite.
    expect(t.mismatch(reference(data, 8).multipart)).toMatch(/is not/);
  });

  it('refuses a part size that cannot be one', () => {
    expect(() => new TransferChecksum(0)).toThrow(RangeError);
    expect(() => new TransferChecksum(1.5)).toThrow(RangeError);
  });
});
