import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRegistry } from '../observability/metrics.js';
import { DigestingStream } from './hashing.js';
import { loadVerificationKey } from './keys.js';
import { LocalEvidenceStore } from './local-store.js';
import { parseCaseLocation } from './location.js';
import { MANIFEST_NAME, openManifest, type CaseInfo, type ForensicCasePredicate } from './manifest.js';
import { S3EvidenceStore, createS3Client, type S3Connection } from './s3-store.js';
import type { EvidenceStore, StoredArtifact } from './store.js';

export interface VerifyOptions {
  publicKeyPem: string | Buffer;
  /** How to reach the store when the location is s3://. */
  s3?: S3Connection;
  /** Bytes digested so far of the artifact being read (for progress output). */
  onProgress?: (p: { name: string; bytes: number; total: number }) => void;
  now?: Date;
}

/**
 * finding: not signed, but the signed manifest names it as an object that nothing accounted
 * for when the case was sealed (kept as found, never evidence).
 */
export type ArtifactStatus = 'ok' | 'missing' | 'mismatch' | 'unexpected' | 'unprotected' | 'finding';

/** The location cannot be verified at all: a usage error (exit 2), not a failed check. */
export class VerifyUsageError extends Error {}

export interface ArtifactCheck {
  name: string;
  status: ArtifactStatus;
  expectedSha256?: string;
  actualSha256?: string;
  expectedSize?: number;
  size?: number;
  retentionMode?: string;
  retainUntil?: string;
  legalHold?: boolean;
  problems: string[];
}

export interface VerifyReport {
  location: string;
  caseId: string;
  ok: boolean;
  /**
   * checked: the store's Object Lock state was compared with what was sealed. not checkable
   * offline: a downloaded copy (a directory) holds bytes, not the store's retention.
   */
  retention: 'checked' | 'not checkable offline' | 'not applicable';
  manifest: {
    found: boolean;
    signatureValid: boolean;
    keyid?: string;
    sealedAt?: string;
    /** Where the manifest says the case was sealed. */
    sealedLocation?: string;
    case?: CaseInfo;
    complete?: boolean;
    gaps?: { what: string; reason: string }[];
    findings?: { what: string; reason: string }[];
    problems: string[];
  };
  artifacts: ArtifactCheck[];
}

/** The largest manifest read into memory; a real one is kilobytes. */
const maxManifestBytes = 64 * 1024 * 1024;

type Target = { kind: 's3'; store: S3EvidenceStore } | { kind: 'local'; store: LocalEvidenceStore };

async function openTarget(
  location: string,
  opts: VerifyOptions,
): Promise<{ target: Target; caseId: string }> {
  let loc: ReturnType<typeof parseCaseLocation>;
  try {
    loc = parseCaseLocation(location);
  } catch (err) {
    throw new VerifyUsageError((err as Error).message);
  }
  const registry = createRegistry();
  if (loc.kind === 'local') {
    const dir = join(loc.root, loc.caseId);
    const st = await stat(dir).catch(() => undefined);
    if (!st) throw new VerifyUsageError(`${dir} does not exist`);
    if (!st.isDirectory()) throw new VerifyUsageError(`${dir} is not a directory`);
    return {
      target: { kind: 'local', store: new LocalEvidenceStore({ root: loc.root, registry }) },
      caseId: loc.caseId,
    };
  }
  const client = createS3Client(opts.s3 ?? {});
  const store = new S3EvidenceStore({ client, bucket: loc.bucket, prefix: loc.prefix, registry });
  return { target: { kind: 's3', store }, caseId: loc.caseId };
}

/**
 * Proves a sealed case unchanged: the manifest's signature holds, every artifact's bytes hash
 * to the signed digest (recomputed by streaming, never trusted from the store), nothing was
 * added or removed, and on S3 every object is still under Object Lock retention with a single
 * version. Never throws for a failed check (the report says what failed); throws when it cannot
 * check at all (unreadable key, unreachable store).
 */
export async function verifyCase(location: string, opts: VerifyOptions): Promise<VerifyReport> {
  const key = loadVerificationKey(opts.publicKeyPem);
  const now = opts.now ?? new Date();
  const { target, caseId } = await openTarget(location, opts);
  const store: EvidenceStore = target.store;
  const here = store.caseLocation(caseId);

  const inventory = await store.inventory(caseId);
  const stored = new Map(inventory.artifacts.map((a) => [a.name, a]));
  const history = target.kind === 's3' ? await target.store.versionHistory(caseId) : undefined;

  const manifest: VerifyReport['manifest'] = { found: false, signatureValid: false, problems: [] };
  let predicate: ForensicCasePredicate | undefined;
  const manifestObject = stored.get(MANIFEST_NAME);
  if (!manifestObject) {
    manifest.problems.push(`no ${MANIFEST_NAME}: the case was never sealed, or its manifest was removed`);
    manifest.problems.push(...historyProblems(history?.get(MANIFEST_NAME)));
  } else {
    manifest.found = true;
    try {
      const opened = openManifest(await readSmall(await store.get(caseId, MANIFEST_NAME)), key);
      manifest.signatureValid = opened.signature.valid;
      if (opened.signature.valid) manifest.keyid = opened.signature.keyid;
      manifest.problems.push(...opened.problems);
      predicate = opened.statement?.predicate;
      manifest.sealedAt = predicate?.sealedAt;
      manifest.case = predicate?.case;
    } catch (err) {
      manifest.problems.push((err as Error).message);
    }
  }
  // Where the bytes are read decides what can be checked: at the S3 location it was sealed at,
  // everything; in a directory holding a downloaded copy, signature and digests only.
  const mode = checkMode(target, predicate?.location, here);
  if (predicate) {
    manifest.sealedLocation = predicate.location;
    if (predicate.completeness) {
      manifest.complete = predicate.completeness.complete;
      manifest.gaps = predicate.completeness.gaps;
    }
    if (predicate.findings) manifest.findings = predicate.findings;
    manifest.problems.push(...bindingProblems(predicate, caseId, here, mode));
  }
  if (manifestObject && mode === 'store')
    manifest.problems.push(
      ...protectionProblems(target, manifestObject, history?.get(MANIFEST_NAME), now),
      ...sealedLockProblems(target, manifestObject, predicate?.retention),
    );

  const expected = new Map((predicate?.artifacts ?? []).map((a) => [a.name, a]));
  const findings = new Map((predicate?.findings ?? []).map((f) => [f.what, f.reason]));
  const names = new Set([...expected.keys(), ...stored.keys()]);
  names.delete(MANIFEST_NAME);
  const artifacts: ArtifactCheck[] = [];
  for (const name of [...names].sort()) {
    const exp = expected.get(name);
    const st = stored.get(name);
    const check: ArtifactCheck = {
      name,
      status: 'ok',
      problems: [],
      ...(exp && { expectedSha256: exp.sha256, expectedSize: exp.size }),
      ...(st?.retentionMode && { retentionMode: st.retentionMode }),
      ...(st?.retainUntil && { retainUntil: st.retainUntil }),
      ...(st?.legalHold !== undefined && { legalHold: st.legalHold }),
    };
    artifacts.push(check);
    if (!st) {
      check.status = 'missing';
      check.problems.push(
        'listed in the manifest but absent from the store',
        ...historyProblems(history?.get(name)),
      );
      continue;
    }
    check.size = st.size;
    if (!exp && findings.has(name)) {
      // Found at sealing time and named in the signed manifest as unaccounted: not evidence.
      check.status = 'finding';
      check.actualSha256 = st.sha256;
      continue;
    }
    if (!exp) {
      // Nothing signed to compare with: report what the store says and do not download it.
      check.status = 'unexpected';
      check.actualSha256 = st.sha256;
      check.problems.push('present in the store but not listed in the manifest');
    } else {
      let actual: { sha256: string; size: number };
      try {
        actual = await digest(store, caseId, st, opts.onProgress);
      } catch (err) {
        // Whatever one object does, the other objects are still checked and reported.
        check.status = 'mismatch';
        check.problems.push(`could not be read to the end: ${(err as Error).message}`);
        continue;
      }
      check.actualSha256 = actual.sha256;
      check.size = actual.size;
      if (actual.sha256 !== exp.sha256) {
        check.status = 'mismatch';
        check.problems.push(`SHA-256 is ${actual.sha256}, the manifest says ${exp.sha256}`);
      }
      if (actual.size !== exp.size) {
        check.status = 'mismatch';
        check.problems.push(`size is ${actual.size} bytes, the manifest says ${exp.size}`);
      }
      if (mode === 'store') check.problems.push(...sealedArtifactLockProblems(target, st, exp));
    }
    if (mode === 'store') {
      check.problems.push(...protectionProblems(target, st, history?.get(name), now));
      if (target.kind === 'local')
        check.problems.push(...(await writableProblem(target.store, caseId, name)));
    }
    if (check.problems.length > 0 && check.status === 'ok') check.status = 'unprotected';
  }

  // What the store found that is no artifact (a bad key, a digest record that is not one): a
  // finding if the seal recorded it, else something written since, which fails verification.
  for (const p of inventory.problems) {
    if (stored.has(p.what) || expected.has(p.what)) continue; // checked above as the artifact itself
    const known = findings.has(p.what);
    artifacts.push({
      name: p.what,
      status: known ? 'finding' : 'unexpected',
      problems: known ? [] : [p.reason],
    });
  }
  artifacts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const ok =
    manifest.problems.length === 0 &&
    manifest.signatureValid &&
    artifacts.every((a) => a.status === 'ok' || a.status === 'finding');
  const retention =
    mode === 'copy' ? 'not checkable offline' : target.kind === 's3' ? 'checked' : 'not applicable';
  return { location, caseId, ok, retention, manifest, artifacts };
}

/**
 * store: the bytes are read where they were sealed (S3, or the local store's own directory).
 * copy: a directory that is not where the case was sealed, e.g. a download of an S3 case; its
 * bytes prove themselves against the signature, but Object Lock is not in a directory.
 */
function checkMode(target: Target, sealedLocation: string | undefined, here: string): 'store' | 'copy' {
  if (target.kind === 's3') return 'store';
  return sealedLocation === here ? 'store' : 'copy';
}

/** The signed statement must name this case, and (in a store) this very location. */
function bindingProblems(
  predicate: ForensicCasePredicate,
  caseId: string,
  here: string,
  mode: 'store' | 'copy',
): string[] {
  const problems: string[] = [];
  if (predicate.case.id !== caseId)
    problems.push(
      `the manifest seals case "${predicate.case.id}", not "${caseId}": it was moved from another case`,
    );
  if (mode === 'store' && predicate.location !== here)
    problems.push(
      `the manifest was sealed at ${predicate.location}, not ${here}: a relocated copy, whose retention and custody are not the sealed ones`,
    );
  return problems;
}

/** The manifest object is locked like the evidence: the mode and the hold the case was sealed with. */
function sealedLockProblems(
  target: Target,
  st: StoredArtifact,
  sealed: ForensicCasePredicate['retention'],
): string[] {
  if (target.kind !== 's3' || !sealed) return [];
  const problems: string[] = [];
  if (sealed.mode && st.retentionMode && st.retentionMode !== sealed.mode)
    problems.push(`lock mode is ${st.retentionMode}, sealed as ${sealed.mode}`);
  if (sealed.legalHold && !st.legalHold) problems.push('the legal hold it was sealed with was removed');
  return problems;
}

/** An artifact's lock as the store reports it now, against the lock recorded when it was sealed. */
function sealedArtifactLockProblems(
  target: Target,
  st: StoredArtifact,
  exp: ForensicCasePredicate['artifacts'][number],
): string[] {
  if (target.kind !== 's3') return [];
  const problems: string[] = [];
  if (exp.retentionMode && st.retentionMode && st.retentionMode !== exp.retentionMode)
    problems.push(`lock mode is ${st.retentionMode}, sealed as ${exp.retentionMode}`);
  if (exp.retainUntil && st.retainUntil && Date.parse(st.retainUntil) < Date.parse(exp.retainUntil))
    problems.push(`retention was shortened: the store says ${st.retainUntil}, sealed as ${exp.retainUntil}`);
  if (exp.legalHold && !st.legalHold) problems.push('the legal hold it was sealed with was removed');
  if (exp.versionId && st.versionId && st.versionId !== exp.versionId)
    problems.push(`the store serves version ${st.versionId}, the sealed version is ${exp.versionId}`);
  return problems;
}

/** On S3: still locked, lock still in the future, one version, no delete marker. */
function protectionProblems(
  target: Target,
  st: StoredArtifact,
  history: { versions: number; deleteMarkers: number } | undefined,
  now: Date,
): string[] {
  if (target.kind !== 's3') return [];
  const problems: string[] = [];
  if (!st.retentionMode || !st.retainUntil) {
    problems.push('no Object Lock retention: the store would let it be deleted');
  } else if (Date.parse(st.retainUntil) <= now.getTime()) {
    problems.push(`retention expired at ${st.retainUntil}: the store no longer refuses deletion`);
  }
  problems.push(...historyProblems(history));
  return problems;
}

function historyProblems(history: { versions: number; deleteMarkers: number } | undefined): string[] {
  const problems: string[] = [];
  if (!history) return problems;
  if (history.versions > 1) {
    problems.push(
      `${history.versions} versions of this key: it was written again after sealing (the locked original is an older version)`,
    );
  }
  if (history.deleteMarkers > 0) {
    problems.push(
      `${history.deleteMarkers} delete marker(s) on this key; locked versions remain in the bucket`,
    );
  }
  return problems;
}

async function writableProblem(store: LocalEvidenceStore, caseId: string, name: string): Promise<string[]> {
  const mode = await store.mode(caseId, name);
  return mode & 0o222
    ? [`file is writable (mode ${mode.toString(8)}): it was made writable after sealing`]
    : [];
}

async function digest(
  store: EvidenceStore,
  caseId: string,
  st: StoredArtifact,
  onProgress: VerifyOptions['onProgress'],
): Promise<{ sha256: string; size: number }> {
  const digester = new DigestingStream();
  const sink = new Writable({
    write(_chunk, _enc, cb) {
      onProgress?.({ name: st.name, bytes: digester.bytes, total: st.size });
      cb();
    },
  });
  await pipeline(await store.get(caseId, st.name), digester, sink);
  return { sha256: digester.sha256, size: digester.bytes };
}

async function readSmall(body: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    size += buf.length;
    if (size > maxManifestBytes)
      throw new Error(`manifest larger than ${maxManifestBytes} bytes: refusing to read it`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}
