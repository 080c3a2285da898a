import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  blobKind,
  contentRootsFor,
  imageIdDigest,
  pickManifest,
  verified,
} from '../../../src/collector/image.js';

const hex = 'a'.repeat(64);

describe('image evidence: pure parts', () => {
  it.each([
    [`registry.example/app@sha256:${hex}`, `sha256:${hex}`],
    [`sha256:${hex}`, `sha256:${hex}`],
    [`docker-pullable://app@sha256:${hex}`, `sha256:${hex}`],
    ['app:latest', undefined],
    [`sha256:${hex.slice(1)}`, undefined],
    [`app@sha256:${hex}/../x`, undefined],
  ])('the digest of image ID %s is %s', (id, digest) => {
    expect(imageIdDigest(id)).toBe(digest);
  });

  it('finds the content store next to a containerd snapshotter root, else the default', () => {
    expect(contentRootsFor(['/tmp/n/root/io.containerd.snapshotter.v1.overlayfs/snapshots'])).toEqual([
      '/tmp/n/root/io.containerd.content.v1.content',
    ]);
    expect(contentRootsFor(['/var/lib/containers/storage/overlay'])).toEqual([
      '/var/lib/containerd/io.containerd.content.v1.content',
    ]);
  });

  it('tells an index, a manifest and a config apart', () => {
    expect(blobKind({ mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })).toBe('index');
    expect(blobKind({ schemaVersion: 2, config: {}, layers: [] })).toBe('manifest');
    expect(blobKind({ architecture: 'amd64', rootfs: { type: 'layers' } })).toBe('config');
    expect(blobKind({ hello: 1 })).toBeUndefined();
  });

  it("picks the node's platform from an index, never an attestation", () => {
    const d = (arch: string, os = 'linux') => ({
      digest: `sha256:${hex}`,
      platform: { os, architecture: arch },
    });
    expect(pickManifest({ manifests: [d('arm64'), d('amd64')] }, 'amd64')?.platform?.architecture).toBe(
      'amd64',
    );
    expect(
      pickManifest({ manifests: [d('arm64'), d('unknown', 'unknown')] }, 'amd64')?.platform?.architecture,
    ).toBe('arm64');
    expect(pickManifest({ manifests: [d('arm64'), d('s390x')] }, 'amd64')).toBeUndefined();
  });
});

describe('a blob checked against its digest while it streams', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amber-blob-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const body = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;

  async function read(content: Buffer, d: { digest: string; size?: number }) {
    const path = join(dir, 'blob');
    writeFileSync(path, content);
    const h = await open(path);
    const out: Buffer[] = [];
    try {
      for await (const c of verified(h, d, 8 * 1024 * 1024)) out.push(c);
      return Buffer.concat(out);
    } catch (err) {
      return { error: (err as Error).message, passed: out.reduce((n, c) => n + c.length, 0) };
    } finally {
      await h.close();
    }
  }

  it('passes a matching blob whole', async () => {
    expect(await read(body, { digest, size: body.length })).toEqual(body);
  });

  it('fails a changed byte before its last chunk is passed on', async () => {
    const tampered = Buffer.from(body);
    tampered[1000] = 8;
    const r = await read(tampered, { digest, size: body.length });
    expect(r).toMatchObject({ error: expect.stringMatching(/tampered or corrupt/) });
    expect((r as { passed: number }).passed).toBeLessThan(body.length);
  });

  it('fails a blob longer or shorter than its descriptor', async () => {
    expect(await read(Buffer.concat([body, Buffer.from('x')]), { digest, size: body.length })).toMatchObject({
      error: expect.stringMatching(/more than/),
    });
    expect(await read(body.subarray(1), { digest, size: body.length })).toMatchObject({
      error: expect.stringMatching(/bytes where its descriptor says/),
    });
  });
});
