import { createHash, generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';

const MiB = 1024 * 1024;

/**
 * A deterministic body of `size` bytes produced chunk by chunk (never whole in memory). Each
 * 1 MiB chunk is a fresh buffer (consumers may keep references) stamped with its index, so
 * parts differ from each other. `onBytes` sees the running total as chunks are produced.
 */
export function generatedBody(size: number, onBytes?: (produced: number) => void): Readable {
  const pattern = Buffer.alloc(MiB);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 2654435761) >>> 24;
  let produced = 0;
  return new Readable({
    read() {
      if (produced >= size) return void this.push(null);
      const n = Math.min(MiB, size - produced);
      const chunk = Buffer.allocUnsafe(n);
      pattern.copy(chunk, 0, 0, n);
      chunk.writeUInt32BE(produced / MiB, 0);
      produced += n;
      onBytes?.(produced);
      this.push(chunk);
    },
  });
}

export async function sha256OfGenerated(size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of generatedBody(size)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function keyPair(type: 'ed25519' | 'p256' = 'ed25519') {
  const { privateKey, publicKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Samples RSS every 20 ms while `work` runs; returns the peak growth over the starting RSS. */
export async function peakRssGrowth<T>(work: () => Promise<T>): Promise<{ result: T; peakGrowth: number }> {
  global.gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, peakGrowth: peak - base };
  } finally {
    clearInterval(timer);
  }
}
