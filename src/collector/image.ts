/**
 * The suspect's image, preserved as the node's runtime holds it (ADR 0024): its index or
 * manifest, its config and its layers up to a cap, read on the host side from containerd's
 * content store (`<root>/io.containerd.content.v1.content/blobs/sha256/<digest>`).
 *
 * The chain starts at the digest the pod status names, and every blob is checked against the
 * digest it is named by while it streams: the last chunk is held back until the whole blob
 * hashed to its name and had the size its parent's descriptor says, so a blob that does not
 * match fails its upload and is a recorded gap — never sealed as that digest. Every blob below
 * the root is named by a verified parent, so the whole image is the one the pod status names,
 * or it is a gap. That root is the node's word: the kubelet writes `imageID` into the pod
 * status, so root on the node could plant a self-consistent image and report its digest. The
 * record says so (`imageIdReportedBy`); the investigator compares the digests with the
 * registry's copy, which is what this evidence is for. Files are opened through safe-fs.ts (descriptor
 * checked: no link followed, no FIFO opened).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createGunzip } from 'node:zlib';
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

export type SpecDigestCheck =
  | { pinned: string; match: true; meaning: string }
  | { pinned: string; match: false; reported: string; meaning: string }
  | { pinned: null; meaning: string };

/**
 * The node's image ID against the digest the pod spec pins. The spec is the API server's word;
 * the image ID is the node's. Equal, the chain collected from that digest is the pinned image
 * (every blob below it is content-addressed); different, the node runs or reports another
 * image than the one the spec pins (a tampered node or runtime, or a mirror that served other
 * content): recorded, and a gap.
 */
export function specDigestCheck(specReference: string | undefined, root: string): SpecDigestCheck {
  const pinned = specReference ? /@(sha256:[0-9a-f]{64})$/.exec(specReference.trim())?.[1] : undefined;
  if (!pinned)
    return {
      pinned: null,
      meaning: specReference
        ? 'the pod spec names a tag, not a digest: only the node says which image it is'
        : 'the pod spec was not given',
    };
  return pinned === root
    ? {
        pinned,
        match: true,
        meaning:
          'the node reports the digest the pod spec pins: the blobs below are content-addressed from it',
      }
    : {
        pinned,
        match: false,
        reported: root,
        meaning:
          'the node reports another digest than the one the pod spec pins: another image, or the same image named by another of its digests (its config, or one platform of a multi-platform index)',
      };
}

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  /** A layer's uncompressed digest, from the verified config (rootfs.diff_ids). */
  diffId?: string;
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
  /** The image the pod spec names (the API server's word, given by the operator). */
  specReference?: string;
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
  const summary: Record<string, unknown> = {
    podStatus: { image: req.reference ?? null, imageID: req.imageId ?? null },
    podSpec: { image: req.specReference ?? null },
    imageIdReportedBy: "the node's kubelet (pod status): compare with the registry's copy",
    contentRoots: req.contentRoots,
    maxLayerBytes: req.maxLayerBytes,
    blobs,
  };
  const record = async () => run.json('image/image.json', summary, GROUP);
  if (!req.imageId) {
    // Nothing to start from, so nothing to record but the skip.
    run.skip('image', 'no image ID given (the pod status gives none for the container)');
    return;
  }
  const root = imageIdDigest(req.imageId);
  if (!root) {
    run.gap('image', `the image ID ${JSON.stringify(req.imageId.slice(0, 200))} ends in no sha256 digest`);
    return void (await record());
  }
  const pin = specDigestCheck(req.specReference, root);
  summary.specDigest = pin;
  if ('match' in pin && !pin.match)
    run.gap(
      'image',
      `the pod spec pins ${pin.pinned} but the node reports ${root} (another image, or another digest of the same one): what is collected is what the node names`,
    );
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
    let configDoc: Record<string, unknown> | undefined;
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
        // The pod status named the config (an image without a repository digest): the manifest
        // is the one in the store that names this config. A manifest planted there could name
        // other layers; the config's diff_ids, checked on every layer, tell them apart.
        configDoc = top;
        const found = await store.manifestsNaming(root, signal);
        summary.manifestFoundBy = `a scan of the content store for a manifest naming the config (${found.scanned} blobs read)`;
        if (found.manifests.length === 0)
          run.gap('image manifest', `no manifest in the content store names the config ${root}`);
        if (found.manifests.length > 1)
          run.skip(
            'image manifest',
            `${found.manifests.length} manifests name the config ${root}: the first is collected (${found.manifests.join(', ')})`,
          );
        if (found.manifests[0]) manifest = await json('manifest', { digest: found.manifests[0] });
      } else {
        run.gap('image', `${root} is neither an index, a manifest nor a config`);
      }
    }
    if (manifest) {
      const config = descriptors([manifest.config])[0];
      if (!config) run.gap('image config', 'the manifest names no config');
      else if (config.digest !== root) configDoc = await json('config', config);
      const diffIds = (configDoc?.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
      let left = req.maxLayerBytes;
      for (const [i, layer] of descriptors(manifest.layers).entries()) {
        const diffId = Array.isArray(diffIds) && typeof diffIds[i] === 'string' ? diffIds[i] : undefined;
        if (diffId) layer.diffId = diffId;
        else if (layer.digest)
          run.gap(
            `image layer ${layer.digest}`,
            'the config gives no diff_id for it: its content is checked against its digest only',
          );
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
            run.gap(`image layer ${layer.digest}`, err);
            return { refused: errorMessage(err), artifact: undefined };
          });
        if (a.artifact) {
          entry.artifact = a.artifact;
          left -= size;
        } else entry.missing = a.refused;
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

  /**
   * Manifests that name `config`: every small blob of the stores is read, checked against its
   * own name, and kept if it is a manifest naming the config. Bounded in entries and bytes.
   */
  async manifestsNaming(
    config: string,
    signal?: AbortSignal,
  ): Promise<{ manifests: string[]; scanned: number }> {
    const manifests: string[] = [];
    let scanned = 0;
    let budget = SCAN_BYTES;
    for (const dir of await this.open()) {
      const names = (await dir.names()).filter((n) => /^[0-9a-f]{64}$/.test(n)).slice(0, SCAN_ENTRIES);
      for (const name of names) {
        if (signal?.aborted || budget <= 0) return { manifests, scanned };
        const st = await dir.lstat(name).catch(() => undefined);
        if (!st?.isFile() || st.size > SCAN_BLOB_BYTES) continue;
        const digest = `sha256:${name}`;
        const body = await this.readVerified({ digest, size: st.size }, SCAN_BLOB_BYTES).catch(
          () => undefined,
        );
        scanned++;
        budget -= st.size;
        if (!body || !body.includes(config)) continue;
        try {
          const doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
          if (blobKind(doc) === 'manifest' && descriptors([doc.config])[0]?.digest === config)
            manifests.push(digest);
        } catch {
          // not JSON: a layer or something else
        }
      }
    }
    return { manifests, scanned };
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

  /**
   * A layer streamed into the store; a mismatch fails the upload, so nothing is stored (the put
   * records the failure); the reason is returned for image.json.
   */
  async putVerified(
    run: Run,
    d: Descriptor,
    name: string,
    signal?: AbortSignal,
  ): Promise<{ artifact?: string; refused?: string }> {
    const { handle } = await this.handle(d.digest);
    let refused: string | undefined;
    async function* watched(): AsyncGenerator<Buffer> {
      try {
        yield* verified(handle, d, d.size ?? 0, signal);
      } catch (err) {
        refused = errorMessage(err);
        throw err;
      }
    }
    try {
      const a = await run.put(name, watched(), GROUP, d.mediaType ?? 'application/octet-stream');
      return a ? { artifact: a.name } : { refused: refused ?? 'the store refused it (see the report)' };
    } finally {
      await handle.close();
    }
  }

  async close(): Promise<void> {
    for (const d of (await this.dirs) ?? []) await d.close();
  }
}

/** The content-store scan for a config's manifest reads blobs of up to 1 MiB, 64 MiB and 100,000 names in all. */
const SCAN_BLOB_BYTES = MiB;
const SCAN_BYTES = 64 * MiB;
const SCAN_ENTRIES = 100_000;

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
  // The descriptor's size is a claim: it never raises the cap (a "config" of gigabytes would
  // otherwise be read whole into memory).
  if (d.size !== undefined && d.size > cap)
    throw new DigestMismatchError(
      `${d.digest}: its descriptor says ${d.size} bytes, over the cap of ${cap}: not stored`,
    );
  const limit = d.size ?? cap;
  const { stream, outcome } = cappedStream(handle, limit, signal);
  const hash = createHash('sha256');
  // A layer's uncompressed content must hash to the config's diff_id: a manifest planted next to
  // the config could otherwise pass off other (self-consistent) layers as the image's.
  const diff = d.diffId ? diffChecker(d) : undefined;
  let held: Buffer | undefined;
  for await (const chunk of stream) {
    hash.update(chunk);
    await diff?.update(chunk);
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
  if (diff) {
    const content = await diff.digest();
    if (content !== d.diffId)
      throw new DigestMismatchError(
        `${d.digest}: its content hashes to ${content}, the config's diff_id is ${d.diffId}: not this image's layer, not stored`,
      );
  }
  if (held) yield held;
}

/** The uncompressed digest of a layer as it streams: the bytes themselves, or gunzipped. */
function diffChecker(d: Descriptor): { update(b: Buffer): unknown; digest(): Promise<string> } {
  const h = createHash('sha256');
  if (!d.mediaType || !/gzip/.test(d.mediaType))
    return { update: (b) => h.update(b), digest: () => Promise.resolve(`sha256:${h.digest('hex')}`) };
  const gunzip = createGunzip();
  let failed: Error | undefined;
  gunzip.on('data', (c: Buffer) => h.update(c));
  gunzip.on('error', (err) => (failed = err));
  return {
    // Waits for the decompressor to keep up: memory stays at one chunk, whatever the layer's size.
    update: async (b) => {
      if (!failed && !gunzip.write(b))
        await Promise.race([once(gunzip, 'drain'), once(gunzip, 'error')]).catch(() => undefined);
    },
    async digest() {
      if (!failed) {
        const ended = Promise.race([once(gunzip, 'end'), once(gunzip, 'error')]).catch(() => undefined);
        gunzip.end();
        await ended;
      }
      return failed ? `(not gzip: ${failed.message})` : `sha256:${h.digest('hex')}`;
    },
  };
}
