import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { collectImage } from '../../../src/collector/image.js';
import { CollectionReport, collectorMetrics } from '../../../src/collector/report.js';
import { CollectionRun } from '../../../src/collector/run.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
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

  // The attack (attacker review): root on the node writes a descriptor claiming gigabytes for a
  // "config"; the size it claims used to become the read limit, and the blob was buffered whole.
  it('refuses a descriptor whose size is over the cap before reading a byte', async () => {
    const r = await read(body, { digest, size: 9 * 1024 * 1024 });
    expect(r).toMatchObject({ error: expect.stringMatching(/over the cap of 8388608/), passed: 0 });
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

describe('image evidence from a content store root on the node could plant blobs in', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amber-content-'));
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const put = (b: Buffer): string => {
    const hex = createHash('sha256').update(b).digest('hex');
    writeFileSync(join(blobs, hex), b);
    return `sha256:${hex}`;
  };
  const layerTar = Buffer.alloc(10_000, 'L');
  const layer = put(gzipSync(layerTar));
  const config = put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: {
          type: 'layers',
          diff_ids: [`sha256:${createHash('sha256').update(layerTar).digest('hex')}`],
        },
      }),
    ),
  );
  const manifestOf = (layers: { digest: string; size: number }[], extra = '') =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 0 },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
        annotations: { x: extra },
      }),
    );
  const genuine = manifestOf([{ digest: layer, size: gzipSync(layerTar).length }]);
  // The config's size in the descriptor must be right: rebuild the manifests with it.
  const configSize = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(layerTar).digest('hex')}`] },
  }).length;
  const fix = (b: Buffer) => Buffer.from(b.toString().replace('"size":0', `"size":${configSize}`));
  const manifest = put(fix(genuine));
  // Root on the node plants a self-consistent manifest naming the real config and its own layer,
  // under a name that sorts before the genuine one, so the scan meets it first.
  const evilTar = Buffer.alloc(10_000, 'E');
  const evilLayer = put(gzipSync(evilTar));
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  for (let i = 0; ; i++) {
    const b = fix(manifestOf([{ digest: evilLayer, size: gzipSync(evilTar).length }], String(i)));
    if (sha(b) < manifest) {
      put(b);
      break;
    }
  }

  async function collect(imageId: string, specReference?: string) {
    const root = mkdtempSync(join(tmpdir(), 'amber-image-store-'));
    const registry = createRegistry();
    const store = new LocalEvidenceStore({ root, registry });
    const report = new CollectionReport(collectorMetrics(registry), {
      caseId: 'c',
      containerId: 'x',
      runtime: 'containerd',
    });
    const run = new CollectionRun(
      store,
      report,
      silentLogger,
      { caseId: 'c', prefix: 'p' },
      { stepsUntil: Infinity, perStepMs: 60_000 },
    );
    await collectImage(run, {
      imageId,
      ...(specReference && { specReference }),
      contentRoots: [dir],
      maxLayerBytes: 1 << 20,
      runtime: 'containerd',
    });
    const names = (await store.list('c')).map((a) => a.name);
    const summary = JSON.parse(readFileSync(join(root, 'c', 'p', 'image', 'image.json'), 'utf8')) as {
      specDigest: Record<string, unknown>;
    };
    rmSync(root, { recursive: true, force: true });
    return { names, report: report.toJSON(), summary };
  }

  it('from a manifest digest: every blob sealed, the gzip layer checked against its diff_id', async () => {
    const { names, report } = await collect(`localhost/app@${manifest}`);
    expect(report.failed).toEqual([]);
    for (const d of [manifest, config, layer]) expect(names).toContain(`p/image/blobs/sha256/${d.slice(7)}`);
  });

  it("from a config digest: a planted manifest's layer is refused by the config's diff_ids, never sealed", async () => {
    const { names, report } = await collect(config);
    expect(names).not.toContain(`p/image/blobs/sha256/${evilLayer.slice(7)}`);
    expect(report.skipped.map((s) => s.reason).join('\n')).toMatch(/2 manifests name the config/);
    expect(report.failed).toContainEqual({
      what: `p/image/blobs/sha256/${evilLayer.slice(7)}`,
      reason: expect.stringMatching(/not this image's layer, not stored/),
    });
  });

  it('from the digest the pod spec pins: said to be the pinned image', async () => {
    const { report, summary } = await collect(`localhost/app@${manifest}`, `localhost/app@${manifest}`);
    expect(report.failed).toEqual([]);
    expect(summary.specDigest).toMatchObject({ pinned: manifest, match: true });
  });

  it('attack: the node reports another digest than the pod spec pins: a gap, and the record says which', async () => {
    const pinned = `sha256:${'1'.repeat(64)}`;
    const { names, report, summary } = await collect(`localhost/app@${manifest}`, `localhost/app@${pinned}`);
    expect(summary.specDigest).toMatchObject({ pinned, match: false, reported: manifest });
    expect(report.failed).toContainEqual({
      what: 'image',
      reason: expect.stringMatching(/pod spec pins sha256:1{64} but the node reports/),
    });
    // What the node names is still collected, for the investigator to compare.
    expect(names).toContain(`p/image/blobs/sha256/${manifest.slice(7)}`);
  });

  it('a tag in the pod spec: nothing to check, and the record says only the node names the image', async () => {
    const { summary } = await collect(`localhost/app@${manifest}`, 'localhost/app:1');
    expect(summary.specDigest).toEqual({
      pinned: null,
      meaning: 'the pod spec names a tag, not a digest: only the node says which image it is',
    });
  });
});
