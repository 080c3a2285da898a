import { crc32 } from 'node:zlib';

/**
 * The checksum S3 checks on every part it receives, computed again on our side so the store's
 * answer can be held against the bytes we hashed (issue 14 item 4, ADR 0003).
 *
 * The evidence's identity is the whole-object SHA-256 computed while streaming; the store's
 * checksum only guards the transfer. SHA-256 there meant hashing every byte three times on the
 * collector's node (ours, the SDK's per part, the store's check); CRC-32 (zlib's, native) costs a
 * fraction of that and still catches a part damaged on the way. A store that kept other bytes
 * than the ones hashed fails the comparison below, whatever the object's size.
 *
 * S3's CRC-32 of an object uploaded in one request is the CRC-32 of its bytes; of a multipart
 * object it is composite: the CRC-32 of the parts' big-endian CRC-32s concatenated, then "-<parts>".
 */
export class TransferChecksum {
  private whole = 0;
  private part = 0;
  private partBytes = 0;
  private readonly parts: number[] = [];

  constructor(private readonly partSize: number) {
    if (!Number.isSafeInteger(partSize) || partSize <= 0) throw new RangeError(`bad part size ${partSize}`);
  }

  update(chunk: Buffer): void {
    this.whole = crc32(chunk, this.whole);
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(chunk.length - at, this.partSize - this.partBytes);
      this.part = crc32(chunk.subarray(at, at + take), this.part);
      this.partBytes += take;
      at += take;
      if (this.partBytes === this.partSize) this.closePart();
    }
  }

  /** The value S3 reports (base64, "-N" for N parts) for a single request or for multipart. */
  expected(form: 'single' | 'multipart'): string {
    if (form === 'single') return be32(this.whole).toString('base64');
    const parts = this.partBytes > 0 || this.parts.length === 0 ? [...this.parts, this.part] : this.parts;
    const joined = Buffer.concat(parts.map(be32));
    return `${be32(crc32(joined)).toString('base64')}-${parts.length}`;
  }

  /** Undefined when `stored` is what S3 computes from the bytes we hashed; else why not. */
  mismatch(stored: string): string | undefined {
    const form = /-\d+$/.test(stored) ? 'multipart' : 'single';
    const ours = this.expected(form);
    return stored === ours
      ? undefined
      : `the store's CRC-32 ${stored} is not ${ours}, computed from the bytes hashed`;
  }

  private closePart(): void {
    this.parts.push(this.part);
    this.part = 0;
    this.partBytes = 0;
  }
}

function be32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}
