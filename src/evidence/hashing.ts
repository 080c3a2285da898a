import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';

/**
 * Passes bytes through unchanged while hashing and counting them, so a body is digested in
 * the same single pass that uploads or writes it (constant memory, no second read).
 */
export class DigestingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private hex?: string;
  bytes = 0;

  /** `also` sees every chunk too (the S3 store's transfer checksum). */
  constructor(private readonly also?: { update(chunk: Buffer): void }) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.also?.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.hex = this.hash.digest('hex');
    callback();
  }

  /** The SHA-256 (hex) of everything that passed; only known once the stream has ended. */
  get sha256(): string {
    if (this.hex === undefined) throw new Error('digest requested before the stream ended');
    return this.hex;
  }
}

export function toReadable(body: Readable | Buffer | string): Readable {
  if (body instanceof Readable) return body;
  // One chunk, not an iterable of bytes: Readable.from() would split a string or Buffer otherwise.
  return Readable.from([typeof body === 'string' ? Buffer.from(body, 'utf8') : body]);
}

/** Streams a body to its SHA-256 and size, reporting progress (bytes read so far) as it goes. */
export async function sha256OfStream(
  body: Readable,
  onBytes?: (bytesSoFar: number) => void,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    hash.update(buf);
    size += buf.length;
    onBytes?.(size);
  }
  return { sha256: hash.digest('hex'), size };
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
