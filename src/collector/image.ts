/**
 * The suspect's image, preserved as the node's runtime holds it (ADR 0024): its index or
 * manifest, its config and its layers up to a cap, read on the host side from containerd's
 * content store (`<root>/io.containerd.content.v1.content/blobs/sha256/<digest>`).
 *
 * The chain starts at the digest the pod status names (the API server's word, not the node's),
 * and every blob is checked against the digest it is named by while it streams: the last chunk
 * is held back until the whole blob hashed to its name and had the size its parent's descriptor
 * says, so a blob that does not match fails its upload and is a recorded gap — never sealed as
 * that digest. Every blob below the root is named by a verified parent, so the whole image is
 * the one the pod status names, or it is a gap. Files are opened through safe-fs.ts (descriptor
 * checked: no link followed, no FIFO opened).
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from './report.js';
import { cappedStream, Dir } from './safe-fs.js';

const MiB = 1024 * 1024;
/** An index, manifest or config larger than this is not one. */
export const MAX_JSON_BLOB_BYTES = 4 * MiB;
export const DEFAULT_CONTENT_ROOT = '/var/lib/containerd/io.containerd.content.v1.content';

/** containerd's content store next to each containerd snapshotter root, else the default. */
export function contentRootsFor(snapshotterRoots: readonly string[]): string[] {
  const roots = new Set<string>();
  for (const r of snapshotterRoots) {
    const m = /^(.*)\/io\.containerd\.snapshotter\.v1\.[^/]+\/snapshots\/?$/.exec(r);
    if (m) roots.add(`${m[1] || ''}/io.containerd.content.v1.content`);
  }
  if (roots.size === 0) roots.add(DEFAULT_CONTENT_ROOT);
  return [...roots];
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** The digest at the end of an image ID: `repo@sha256:…`, `sha256:…`, `docker-pullable://repo@sha256:…`. */
export function imageIdDigest(imageId: string): string | undefined {
  const m = /(?:^|@|\/\/)(sha256:[0-9a-f]{64})$/.exec(imageId.trim());
  return m?.[1];
}

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
const MANIFEST_TYPES = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
]);

type Kind = 'index' | 'manifest' | 'config';

/** What a JSON blob is, by its mediaType, else by its shape. */
export function blobKind(doc: Record<string, unknown>): Kind | undefined {
  const mt = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (mt && INDEX_TYPES.has(mt)) return 'index';
  if (mt && MANIFEST_TYPES.has(mt)) return 'manifest';
  if (Array.isArray(doc.manifests)) return 'index';
  if (Array.isArray(doc.layers) && doc.config && typeof doc.config === 'object') return 'manifest';
  if (doc.rootfs && typeof doc.rootfs === 'object') return 'config';
  return undefined;
}

function descriptors(v: unknown): Descriptor[] {
  if (!Array.isArray(v)) return [];
  return v.filter(
    (d): d is Descriptor =>
      !!d &&
      typeof d === 'object' &&
      typeof (d as Descriptor).digest === 'string' &&
      DIGEST.test((d as Descriptor).digest),
  );
}

const nodeArch = (): string =>
  ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' })[process.arch as string] ??
  process.arch;

/** The index's manifest for this node's platform (linux/<arch>), or its only manifest. */
export function pickManifest(index: Record<string, unknown>, arch = nodeArch()): Descriptor | undefined {
  const all = descriptors(index.manifests);
  const real = all.filter((d) => d.platform?.os !== 'unknown');
  return (
    real.find((d) => d.platform?.os === 'linux' && d.platform.architecture === arch) ??
    (real.length === 1 ? real[0] : undefined)
  );
}

export interface ImageRequest {
  /** The image reference the pod status gives (status.containerStatuses[].image). */
  reference?: string;
  /** The image ID the pod status gives (…imageID): its digest is where the chain starts. */
  imageId?: string;
  /** Content store roots, as the collector sees them (host root prefixed). */
  contentRoots: string[];
  maxLayerBytes: number;
  runtime: string;
}

export interface ImageBlob {
  role: 'index' | 'manifest' | 'config' | 'layer';
  digest: string;
  mediaType?: string;
  size?: number;
  /** The artifact it is stored as; absent when it is not. */
  artifact?: string;
  /** Why it is not stored. */
  missing?: string;
}

interface Run {
  put(
    name: string,
    body: AsyncIterable<Buffer> | Buffer,
    group: string,
    contentType?: string,
  ): Promise<{ name: string; sha256: string } | undefined>;
  json(name: string, value: unknown, group: string): Promise<unknown>;
  gap(what: string, err: unknown): void;
  skip(what: string, reason: string): void;
}

const GROUP = 'image';
const blobName = (digest: string) => `image/blobs/sha256/${digest.slice('sha256:'.length)}`;

/**
 * Stores the image's blobs (OCI layout names: image/blobs/sha256/<hex>) and image/image.json,
 * which says what each blob is and what is missing and why. Never throws for what it finds.
 */
export async function collectImage(run: Run, req: ImageRequest, signal?: AbortSignal): Promise<void> {
  const blobs: ImageBlob[] = [];
  const summary = {
    podStatus: { image: req.reference ?? null, imageID: req.imageId ?? null },
    contentRoots: req.contentRoots,
    maxLayerBytes: req.maxLayerBytes,
    blobs,
  };
  const record = async () => run.json('image/image.json', summary, GROUP);
  if (!req.imageId) {
    run.skip('image', 'the pod status gives no image ID for the container');
    return void (await record());
  }
  const root = imageIdDigest(req.imageId);
  if (!root) {
    run.gap('image', `the image ID ${JSON.stringify(req.imageId.slice(0, 200))} ends in no sha256 digest`);
    return void (await record());
  }
  if (req.runtime !== 'containerd' && req.runtime !== 'auto')
    run.skip('image', `only containerd's content store is read; the runtime is ${req.runtime}`);

  const store = new ContentStore(req.contentRoots);
  try {
    /** A JSON blob, verified; undefined (with its gap) when it is not there or not its digest. */
    const json = async (
      role: ImageBlob['role'],
      d: Descriptor,
    ): Promise<Record<string, unknown> | undefined> => {
      const entry: ImageBlob = {
        role,
        digest: d.digest,
        ...(d.mediaType && { mediaType: d.mediaType }),
        ...(d.size !== undefined && { size: d.size }),
      };
      blobs.push(entry);
      const got = await store.readVerified(d, MAX_JSON_BLOB_BYTES).catch((err: unknown) => {
        entry.missing = errorMessage(err);
        run.gap(`image ${role} ${d.digest}`, err);
        return undefined;
      });
      if (!got) return undefined;
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(got.toString('utf8')) as Record<string, unknown>;
      } catch (err) {
        doc = {};
        run.gap(`image ${role} ${d.digest}`, `not JSON: ${errorMessage(err)} (stored as it is)`);
      }
      const a = await run.put(blobName(d.digest), got, GROUP, d.mediaType ?? 'application/json');
      if (a) entry.artifact = a.name;
      else entry.missing = 'not stored (see the report)';
      return doc;
    };

    const top = await json('manifest', { digest: root });
    let manifest: Record<string, unknown> | undefined;
    if (top) {
      const kind = blobKind(top);
      blobs[0]!.role = kind === 'index' ? 'index' : kind === 'config' ? 'config' : 'manifest';
      if (kind === 'index') {
        const chosen = pickManifest(top);
        if (!chosen) run.gap('image manifest', `the index ${root} lists no manifest for linux/${nodeArch()}`);
        else manifest = await json('manifest', chosen);
      } else if (kind === 'manifest') {
        manifest = top;
      } else if (kind === 'config') {
        // The pod status named the config (an image without a repository digest): the
        // manifests that name it are not found from it; the config itself is stored.
        run.skip(
          'image manifest',
          `the image ID names the image's config (${root}), not its manifest: manifest and layers not found from it`,
        );
      } else {
        run.gap('image', `${root} is neither an index, a manifest nor a config`);
      }
    }
    if (manifest) {
      const config = descriptors([manifest.config])[0];
      if (config) await json('config', config);
      else run.gap('image config', 'the manifest names no config');
      let left = req.maxLayerBytes;
      for (const layer of descriptors(manifest.layers)) {
        const entry: ImageBlob = {
          role: 'layer',
          digest: layer.digest,
          ...(layer.mediaType && { mediaType: layer.mediaType }),
          ...(layer.size !== undefined && { size: layer.size }),
        };
        blobs.push(entry);
        const size = layer.size;
        if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
          entry.missing = 'the manifest gives no size';
          run.gap(`image layer ${layer.digest}`, entry.missing);
          continue;
        }
        if (size > left) {
          entry.missing = `not copied: ${size} bytes, and ${left} of the layers' cap of ${req.maxLayerBytes} bytes are left`;
          run.skip(`image layer ${layer.digest}`, entry.missing);
          continue;
        }
        if (signal?.aborted) {
          entry.missing = "not copied: the step's deadline was reached";
          run.skip(`image layer ${layer.digest}`, entry.missing);
          continue;
        }
        const a = await store
          .putVerified(run, layer, blobName(layer.digest), signal)
          .catch((err: unknown) => {
            entry.missing = errorMessage(err);
            run.gap(`image layer ${layer.digest}`, err);
            return undefined;
          });
        if (a) {
          entry.artifact = a.name;
          left -= size;
        } else
          entry.missing ??=
            'not stored: it does not match its digest, or the store refused it (see the report)';
      }
    }
  } finally {
    await store.close();
  }
  await record();
}

/** Blobs of containerd content stores, each opened through a held directory descriptor. */
class ContentStore {
  private dirs: Promise<Dir[]> | undefined;
  constructor(private readonly roots: string[]) {}

  private open(): Promise<Dir[]> {
    this.dirs ??= (async () => {
      const out: Dir[] = [];
      for (const r of this.roots) {
        const d = await Dir.open(join(r, 'blobs', 'sha256')).catch(() => undefined);
        if (d) out.push(d);
      }
      return out;
    })();
    return this.dirs;
  }

  /** The blob's file, descriptor-checked; throws when no root has it. */
  private async handle(digest: string): Promise<{ handle: FileHandle; size: number }> {
    const hex = DIGEST.exec(digest)?.[1];
    if (!hex) throw new Error(`${digest} is not a sha256 digest`);
    const dirs = await this.open();
    if (dirs.length === 0) throw new Error(`no content store found at ${this.roots.join(', ')}`);
    for (const dir of dirs) {
      const st = await dir.lstat(hex).catch(() => undefined);
      if (!st) continue;
      const handle = await dir.openFile(hex, st);
      return { handle, size: st.size };
    }
    throw new Error(`not in the content store (${this.roots.join(', ')})`);
  }

  /** A small blob read whole and checked against its digest and descriptor size. */
  async readVerified(d: Descriptor, cap: number): Promise<Buffer> {
    const { handle } = await this.handle(d.digest);
    try {
      const chunks: Buffer[] = [];
      for await (const c of verified(handle, d, cap)) chunks.push(c);
      return Buffer.concat(chunks);
    } finally {
      await handle.close();
    }
  }

  /** A layer streamed into the store; a mismatch fails the upload, so nothing is stored. */
  async putVerified(run: Run, d: Descriptor, name: string, signal?: AbortSignal) {
    const { handle } = await this.handle(d.digest);
    try {
      return await run.put(
        name,
        verified(handle, d, d.size ?? 0, signal),
        GROUP,
        d.mediaType ?? 'application/octet-stream',
      );
    } finally {
      await handle.close();
    }
  }

  async close(): Promise<void> {
    for (const d of (await this.dirs) ?? []) await d.close();
  }
}

export class DigestMismatchError extends Error {
  readonly code = 'EDIGEST';
}

/**
 * The blob's bytes, the last chunk held back until the whole blob hashed to its digest with the
 * descriptor's size (when it gives one): a mismatch throws instead of ending the stream, which
 * fails the put that reads it.
 */
export async function* verified(
  handle: FileHandle,
  d: Descriptor,
  cap: number,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  const want = DIGEST.exec(d.digest)?.[1];
  if (!want) throw new DigestMismatchError(`${d.digest} is not a sha256 digest`);
  const limit = d.size ?? cap;
  const { stream, outcome } = cappedStream(handle, limit, signal);
  const hash = createHash('sha256');
  let held: Buffer | undefined;
  for await (const chunk of stream) {
    hash.update(chunk);
    if (held) yield held;
    held = chunk;
  }
  if (outcome.cut) throw new Error(`cut short: ${outcome.cut}`);
  if (outcome.truncated)
    throw new DigestMismatchError(
      `${d.digest}: the file holds more than the ${limit} bytes its descriptor says: not stored`,
    );
  if (d.size !== undefined && outcome.bytes !== d.size)
    throw new DigestMismatchError(
      `${d.digest}: ${outcome.bytes} bytes where its descriptor says ${d.size}: not stored`,
    );
  const got = hash.digest('hex');
  if (got !== want)
    throw new DigestMismatchError(
      `${d.digest}: the file's bytes hash to sha256:${got}: tampered or corrupt, not stored`,
    );
  if (held) yield held;
}
