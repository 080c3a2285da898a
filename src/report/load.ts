import { createHash } from 'node:crypto';
import { loadVerificationKey } from '../evidence/keys.js';
import { LocalEvidenceStore } from '../evidence/local-store.js';
import { parseCaseLocation } from '../evidence/location.js';
import { MANIFEST_NAME, openManifest } from '../evidence/manifest.js';
import { S3EvidenceStore, createS3Client, type S3Connection } from '../evidence/s3-store.js';
import type { EvidenceStore } from '../evidence/store.js';
import { verifyCase, type VerifyReport } from '../evidence/verify.js';
import { createRegistry } from '../observability/metrics.js';
import { amberVersion } from '../observability/version.js';
import { buildReport, type EvidenceFile, type ReportModel } from './model.js';

/** The artifacts a report reads; everything else is listed in the artifact table only. */
const READ = [
  /^orchestrator\/(pod\.yaml|alerts\.json|report\.json)$/,
  /^containers\/[^/]+\/(processes|network|exposure|container|report)\.json$/,
  /^containers\/[^/]+\/filesystem\/diff\.json$/,
];

/** The largest artifact a report parses; a bigger one is "not shown" (the evidence keeps it). */
export const MAX_READ_BYTES = 64 * 1024 * 1024;

export interface LoadOptions {
  publicKeyPem: string | Buffer;
  s3?: S3Connection;
  now?: Date;
}

/**
 * Gathers a report: verifies the case first (the same checks as `amber verify`), then reads the
 * manifest's predicate and the artifacts the report shows. Content is used only where the
 * manifest's signature holds and the bytes read hash to the signed digest: what the report shows
 * is what was sealed, or it says why not. Throws only when the case cannot be read at all.
 */
export async function loadReport(
  location: string,
  opts: LoadOptions,
): Promise<{ model: ReportModel; verify: VerifyReport }> {
  const verify = await verifyCase(location, {
    publicKeyPem: opts.publicKeyPem,
    ...(opts.s3 && { s3: opts.s3 }),
    ...(opts.now && { now: opts.now }),
  });
  const { store, caseId } = openStore(location, opts.s3);
  const key = loadVerificationKey(opts.publicKeyPem);

  let predicate: unknown;
  const signed = new Map<string, string>();
  try {
    const opened = openManifest((await readBounded(store, caseId, MANIFEST_NAME)).toString('utf8'), key);
    if (opened.signature.valid) {
      // The predicate as signed, with fields this version does not know (zod would strip them).
      const payload = JSON.parse(Buffer.from(opened.envelope.payload, 'base64').toString('utf8')) as {
        predicate?: unknown;
      };
      predicate = payload.predicate;
      for (const s of opened.statement?.subject ?? []) signed.set(s.name, s.digest.sha256);
    }
  } catch {
    // verify already reports what is wrong with the manifest.
  }

  const files = new Map<string, EvidenceFile>();
  for (const a of verify.artifacts) {
    if (!READ.some((r) => r.test(a.name)) || a.status === 'missing') continue;
    const expected = signed.get(a.name);
    if (!expected) {
      files.set(a.name, { text: '', unusable: 'is not covered by a valid manifest signature' });
      continue;
    }
    if ((a.size ?? 0) > MAX_READ_BYTES) {
      files.set(a.name, { text: '', unusable: `is larger than ${MAX_READ_BYTES} bytes` });
      continue;
    }
    const bytes = await readBounded(store, caseId, a.name);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    files.set(
      a.name,
      sha256 === expected
        ? { text: bytes.toString('utf8') }
        : { text: '', unusable: `does not match its signed digest (read ${sha256.slice(0, 16)}...)` },
    );
  }

  const model = buildReport({ verify, predicate, files, generatedAt: opts.now ?? new Date(), amberVersion });
  return { model, verify };
}

function openStore(location: string, s3: S3Connection | undefined): { store: EvidenceStore; caseId: string } {
  const loc = parseCaseLocation(location);
  const registry = createRegistry();
  if (loc.kind === 'local')
    return { store: new LocalEvidenceStore({ root: loc.root, registry }), caseId: loc.caseId };
  return {
    store: new S3EvidenceStore({
      client: createS3Client(s3 ?? {}),
      bucket: loc.bucket,
      prefix: loc.prefix,
      registry,
    }),
    caseId: loc.caseId,
  };
}

async function readBounded(store: EvidenceStore, caseId: string, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const body = await store.get(caseId, name);
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buf.length;
    if (size > MAX_READ_BYTES) {
      body.destroy();
      throw new Error(`${name} is larger than ${MAX_READ_BYTES} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}
