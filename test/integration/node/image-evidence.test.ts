import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectContainer, type CollectResult } from '../../../src/collector/collect.js';
import { imageIdDigest } from '../../../src/collector/image.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { NODE_SNAPSHOTS, RealNode, nodeUnavailable } from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';
import { readPcap } from '../../testenv/pcap.js';

const unavailable = nodeUnavailable();
if (unavailable) console.warn(`SKIPPED test/integration/node/image-evidence.test.ts: ${unavailable}`);

/** The node's containerd (test/testenv/node.ts): its content store and its runc shims' state. */
const CONTAINERD = join(NODE_SNAPSHOTS, '..', '..', '..');
const CONTENT = join(CONTAINERD, 'root', 'io.containerd.content.v1.content', 'blobs', 'sha256');
const TASKS = join(CONTAINERD, 'state', 'io.containerd.runtime.v2.task', 'k8s.io');

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function tarOf(files: { name: string; body: Buffer; mode?: number }[]): Promise<Buffer> {
  const p = pack();
  for (const f of files) p.entry({ name: f.name, mode: f.mode ?? 0o644, mtime: new Date(0) }, f.body);
  p.finalize();
  return readAll(p as unknown as Readable);
}

/**
 * A one-layer OCI archive (the layout `ctr images import` takes): the host's static busybox and
 * a random marker, so the layer's digest is this run's own.
 */
async function ociArchive(
  ref: string,
): Promise<{ archive: Buffer; layer: string; manifest: string; config: string }> {
  const layer = await tarOf([
    { name: 'bin/busybox', body: readFileSync('/bin/busybox'), mode: 0o755 },
    { name: 'marker', body: randomBytes(32) },
  ]);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/busybox', 'sleep', '3600'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layer)}`] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${sha256(config)}`,
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: `sha256:${sha256(layer)}`,
          size: layer.length,
        },
      ],
    }),
  );
  const index = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: `sha256:${sha256(manifest)}`,
        size: manifest.length,
        annotations: {
          'io.containerd.image.name': ref,
          'org.opencontainers.image.ref.name': ref.split(':').pop(),
        },
      },
    ],
  };
  const archive = await tarOf([
    { name: 'oci-layout', body: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', body: Buffer.from(JSON.stringify(index)) },
    ...[layer, config, manifest].map((b) => ({ name: `blobs/sha256/${sha256(b)}`, body: b })),
  ]);
  return { archive, layer: sha256(layer), manifest: sha256(manifest), config: sha256(config) };
}

interface ImageJson {
  podStatus: { image: string; imageID: string };
  blobs: { role: string; digest: string; artifact?: string; missing?: string }[];
}

/**
 * The suspect's image (issue 12, item 4), read by the collector from the real node's containerd
 * content store, starting at the image ID the real kubelet put in the pod status; and its
 * traffic (item 3) captured inside a real pod's network namespace (ADR 0024).
 */
describe.skipIf(unavailable)('the suspect image, from the real node containerd', () => {
  let cluster: Cluster;
  let node: RealNode;
  let pods: NodePods;
  let work: string;

  beforeAll(async () => {
    cluster = await startCluster({ realNode: true });
    node = await RealNode.start(cluster);
    pods = new NodePods(cluster.kubeConfig());
    await pods.core.createNamespace({ body: { metadata: { name: 'shop' } } });
    work = mkdtempSync(join(tmpdir(), 'amber-image-evidence-'));
  }, 20 * 60_000);
  afterAll(async () => {
    await node?.stop();
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  }, 120_000);

  async function collect(
    pod: string,
    caseId: string,
    groups: ('image' | 'packetCapture')[] = ['image'],
  ): Promise<{ result: CollectResult; store: LocalEvidenceStore; image: ImageJson; prefix: string }> {
    const p = await pods.core.readNamespacedPod({ namespace: 'shop', name: pod });
    const status = p.status!.containerStatuses![0]!;
    const store = new LocalEvidenceStore({ root: join(work, caseId), registry: createRegistry() });
    const containerId = status.containerID!.replace(/^[a-z]+:\/\//, '');
    const result = await collectContainer(
      {
        caseId,
        containerId,
        runtime: 'containerd',
        runtimeRoot: TASKS,
        snapshotterRoots: [NODE_SNAPSHOTS],
        namespace: 'shop',
        pod,
        node: node.name,
        groups,
        captureSeconds: 3,
        image: status.image,
        imageId: status.imageID,
        terminationMessagePath: null,
        // This machine does not let even root read PID 1's namespaces.
        hostReferencePid: process.pid,
      },
      store,
      { registry: createRegistry() },
    );
    const prefix = `containers/${containerId.slice(0, 12)}`;
    if (!groups.includes('image'))
      return { result, store, image: { podStatus: { image: '', imageID: '' }, blobs: [] }, prefix };
    const image = JSON.parse(
      (await readAll(await store.get(caseId, `${prefix}/image/image.json`))).toString(),
    ) as ImageJson;
    return { result, store, image, prefix };
  }

  it("seals the manifest, config and layers that containerd holds for the pod's image, each under its own digest", async () => {
    await pods.run('shop', 'suspect', node.images.busybox!.ref, ['sleep', '3600']);
    const { result, store, image, prefix } = await collect('suspect', 'case-image');
    console.log(
      `image evidence: ${JSON.stringify(image.blobs.map((b) => [b.role, b.digest.slice(7, 19), !!b.artifact]))}`,
    );
    expect(result.ok).toBe(true);
    expect(result.report.failed).toEqual([]);

    // Where the chain starts: the digest the kubelet reported is the one containerd names the image by.
    const root = imageIdDigest(image.podStatus.imageID)!;
    const listed = node
      .ctr(['images', 'ls'])
      .split('\n')
      .find((l) => l.startsWith(`${node.images.busybox!.ref} `));
    expect(image.blobs[0]!.digest).toBe(root);
    // containerd names the image by its manifest (or index): the one sealed.
    const top = image.blobs.find((b) => b.role === 'manifest' || b.role === 'index');
    expect(listed).toContain(top?.digest);

    const held = new Set(
      node
        .ctr(['content', 'ls', '-q'])
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    );
    const roles = image.blobs.map((b) => b.role);
    expect(roles).toContain('config');
    expect(roles).toContain('layer');
    for (const b of image.blobs) {
      expect(held.has(b.digest)).toBe(true);
      expect(b.artifact).toBe(`${prefix}/image/blobs/sha256/${b.digest.slice(7)}`);
      // Sealed with the digest the store computed, which is the blob's name; the bytes are containerd's.
      const entry = result.report.collected.find((c) => c.artifact === b.artifact);
      expect(`sha256:${entry?.sha256}`).toBe(b.digest);
      const stored = await readAll(await store.get('case-image', b.artifact!));
      expect(sha256(stored)).toBe(b.digest.slice(7));
    }
  });

  it('records a layer whose bytes were changed on the node as a gap and never seals it', async () => {
    const ref = `localhost/amber-tampered:${randomBytes(4).toString('hex')}`;
    const img = await ociArchive(ref);
    const archive = join(work, 'tampered.tar');
    writeFileSync(archive, img.archive);
    node.importImage({ name: 'tampered', archive, ref });
    await pods.run('shop', 'tampered', ref, ['/bin/busybox', 'sleep', '3600']);

    // Root on the node changes one byte of the layer in the content store, keeping its name and size.
    const blob = join(CONTENT, img.layer);
    const bytes = readFileSync(blob);
    const at = bytes.length - 2000;
    bytes[at] = bytes[at]! ^ 0xff;
    writeFileSync(blob, bytes);

    const { result, store, image, prefix } = await collect('tampered', 'case-tampered');
    const layer = image.blobs.find((b) => b.role === 'layer');
    expect(layer).toMatchObject({
      digest: `sha256:${img.layer}`,
      missing: expect.stringMatching(/tampered or corrupt/),
    });
    expect(layer?.artifact).toBeUndefined();
    expect(result.report.failed).toContainEqual({
      what: `${prefix}/image/blobs/sha256/${img.layer}`,
      reason: expect.stringMatching(/hash to sha256:[0-9a-f]{64}: tampered or corrupt, not stored/),
    });
    // Nothing under the layer's name in the store; what was intact is sealed.
    const names = (await store.list('case-tampered')).map((a) => a.name);
    expect(names.filter((n) => n.includes(img.layer))).toEqual([]);
    expect(names).toContain(`${prefix}/image/blobs/sha256/${img.manifest}`);
    expect(names).toContain(`${prefix}/image/blobs/sha256/${img.config}`);
  });

  it("captures a pod's traffic on its veth, inside the pod's network namespace", async () => {
    const peer = await pods.run('shop', 'peer', node.images.busybox!.ref, [
      'nc',
      '-ll',
      '-p',
      '8080',
      '-e',
      'echo',
      'amber-pong',
    ]);
    await pods.run('shop', 'talker', node.images.busybox!.ref, [
      'sh',
      '-c',
      `i=0; while true; do i=$((i+1)); echo "amber-ping-$i" | nc ${peer.status!.podIP} 8080 > /dev/null; sleep 0.1; done`,
    ]);
    const { result, store, prefix } = await collect('talker', 'case-traffic', ['packetCapture']);
    const pcap = await readAll(await store.get('case-traffic', `${prefix}/network/capture.pcap`));
    const { packets } = readPcap(pcap);
    expect(packets.some((p) => p.dst === 8080 && p.payload.toString().startsWith('amber-ping-'))).toBe(true);
    expect(packets.some((p) => p.src === 8080 && p.payload.toString() === 'amber-pong\n')).toBe(true);
    expect(result.report.failed.filter((f) => f.what.includes('capture'))).toEqual([]);
  });
});
