import { z } from 'zod';
import { envelopeSchema, signEnvelope, verifyEnvelope, type Envelope } from './dsse.js';
import type { SigningKey, VerificationKey } from './keys.js';
import { retentionModeSchema } from './retention.js';
import { ArtifactExistsError, type EvidenceStore, type StoredArtifact } from './store.js';

/** The signed manifest's name inside the case; reserved, so no artifact can take it. */
export const MANIFEST_NAME = 'manifest.intoto.jsonl';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://amber.io/forensic-case/v1';
export const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** Who the case is about. Open-ended: the operator adds what it knows (alert, policy, ...). */
export const caseInfoSchema = z.looseObject({
  id: z.string().min(1),
  namespace: z.string().optional(),
  pod: z.string().optional(),
  node: z.string().optional(),
  reason: z.string().optional(),
});
export type CaseInfo = z.infer<typeof caseInfoSchema>;

export const timelineEntrySchema = z.looseObject({
  time: z.string(),
  action: z.string(),
  message: z.string().optional(),
});
export type TimelineEntry = z.infer<typeof timelineEntrySchema>;

const artifactRecordSchema = z.object({
  name: z.string(),
  uri: z.string(),
  /** S3: where exactly the sealed bytes are (the version a reader must get). */
  bucket: z.string().optional(),
  key: z.string().optional(),
  versionId: z.string().optional(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  collectedBy: z.string().optional(),
  collectedAt: z.string().optional(),
  node: z.string().optional(),
  containerId: z.string().optional(),
  contentType: z.string().optional(),
  retentionMode: retentionModeSchema.optional(),
  retainUntil: z.string().optional(),
  legalHold: z.boolean().optional(),
});

/** Something the case wanted and did not get, or found and does not account for. */
export const noteSchema = z.object({ what: z.string(), reason: z.string() });
export type Note = z.infer<typeof noteSchema>;

/** Where the case was sealed: verify refuses the manifest anywhere else (a relocated case). */
export const storeBindingSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('s3'), bucket: z.string(), prefix: z.string() }),
  z.object({ kind: z.literal('local'), root: z.string() }),
]);
export type StoreBinding = z.infer<typeof storeBindingSchema>;

/**
 * One handling step of the evidence, as NIST SP 800-61's evidence log asks: who (the operator's
 * Kubernetes identity, or the node a collector ran on), with what tool and version, and when
 * (ISO 8601 with its zone designator; Amber writes UTC, "Z").
 */
export const custodyStepSchema = z.object({
  step: z.string(),
  actor: z.object({ kind: z.enum(['operator', 'node']), name: z.string() }),
  tool: z.object({ name: z.string(), version: z.string() }),
  startedAt: z.string().optional(),
  finishedAt: z.string(),
  detail: z.string().optional(),
});
export type CustodyStep = z.infer<typeof custodyStepSchema>;

export const predicateSchema = z.object({
  case: caseInfoSchema,
  location: z.string(),
  store: storeBindingSchema.optional(),
  /** The retention every object was written with; verify compares the store with it. */
  retention: z
    .object({ mode: retentionModeSchema.optional(), period: z.string().optional(), legalHold: z.boolean() })
    .optional(),
  sealedAt: z.string(),
  /** Whether everything the case asked for was collected, and what was not. */
  completeness: z
    .object({
      complete: z.boolean(),
      /** What makes it incomplete: a container or view not collected, an artifact reported and absent. */
      gaps: z.array(noteSchema),
      /** Items that could not be read inside what was collected. */
      unreadable: z.array(noteSchema).default([]),
    })
    .optional(),
  /** Objects under the case that no collector accounts for: listed here, not signed as evidence. */
  findings: z.array(noteSchema).optional(),
  custody: z.array(custodyStepSchema).optional(),
  artifacts: z.array(artifactRecordSchema),
  timeline: z.array(timelineEntrySchema),
});
export type ForensicCasePredicate = z.infer<typeof predicateSchema>;

export const statementSchema = z.object({
  _type: z.literal(STATEMENT_TYPE),
  subject: z.array(
    z.object({ name: z.string(), digest: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }) }),
  ),
  predicateType: z.literal(PREDICATE_TYPE),
  predicate: predicateSchema,
});
export type Statement = z.infer<typeof statementSchema>;

export interface SealInput {
  artifacts: StoredArtifact[];
  caseInfo: CaseInfo;
  timeline: TimelineEntry[];
  store?: StoreBinding;
  retention?: ForensicCasePredicate['retention'];
  completeness?: { complete: boolean; gaps: Note[]; unreadable: Note[] };
  findings?: Note[];
  custody?: CustodyStep[];
}

/** The manifest lists at most this many gaps and findings; the rest are counted. */
export const NOTES_LIMIT = 1000;

function bounded(notes: Note[]): Note[] {
  if (notes.length <= NOTES_LIMIT) return notes;
  return [
    ...notes.slice(0, NOTES_LIMIT - 1),
    { what: `${notes.length - NOTES_LIMIT + 1} more`, reason: 'left out of the manifest to bound its size' },
  ];
}

function s3Address(uri: string): { bucket: string; key: string } | undefined {
  if (!uri.startsWith('s3://')) return undefined;
  const rest = uri.slice('s3://'.length);
  const slash = rest.indexOf('/');
  return slash > 0 ? { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) } : undefined;
}

/** The in-toto Statement for a case: subjects carry the digests, the predicate the custody record. */
export function buildStatement(input: SealInput & { location: string; sealedAt: Date }): Statement {
  const names = new Set<string>();
  for (const a of input.artifacts) {
    if (a.name === MANIFEST_NAME) throw new Error(`"${MANIFEST_NAME}" is reserved for the manifest`);
    if (names.has(a.name)) throw new Error(`artifact "${a.name}" is listed twice`);
    names.add(a.name);
  }
  // Sorted so the same case always yields the same bytes, whatever order collection finished in.
  const artifacts = [...input.artifacts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    _type: STATEMENT_TYPE,
    subject: artifacts.map((a) => ({ name: a.name, digest: { sha256: a.sha256 } })),
    predicateType: PREDICATE_TYPE,
    predicate: {
      case: caseInfoSchema.parse(input.caseInfo),
      location: input.location,
      ...(input.store && { store: input.store }),
      ...(input.retention && { retention: input.retention }),
      sealedAt: input.sealedAt.toISOString(),
      ...(input.completeness && {
        completeness: {
          complete: input.completeness.complete,
          gaps: bounded(input.completeness.gaps),
          unreadable: bounded(input.completeness.unreadable),
        },
      }),
      ...(input.findings && { findings: bounded(input.findings) }),
      ...(input.custody && { custody: input.custody }),
      artifacts: artifacts.map((a) => ({
        name: a.name,
        uri: a.uri,
        ...s3Address(a.uri),
        ...(a.versionId && { versionId: a.versionId }),
        size: a.size,
        sha256: a.sha256,
        ...(a.metadata?.collectedBy && { collectedBy: a.metadata.collectedBy }),
        ...(a.metadata?.collectedAt && { collectedAt: a.metadata.collectedAt }),
        ...(a.metadata?.node && { node: a.metadata.node }),
        ...(a.metadata?.containerId && { containerId: a.metadata.containerId }),
        ...(a.metadata?.contentType && { contentType: a.metadata.contentType }),
        ...(a.retentionMode && { retentionMode: a.retentionMode }),
        ...(a.retainUntil && { retainUntil: a.retainUntil }),
        ...(a.legalHold !== undefined && { legalHold: a.legalHold }),
      })),
      timeline: z.array(timelineEntrySchema).parse(input.timeline),
    },
  };
}

/** One DSSE envelope on one line: the in-toto attestation bundle (JSON Lines) format. */
export function encodeManifest(statement: Statement, key: SigningKey): string {
  const envelope = signEnvelope(INTOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(statement), 'utf8'), key);
  return `${JSON.stringify(envelope)}\n`;
}

export type SealResult =
  | { existed: false; uri: string; sha256: string; versionId?: string; statement: Statement }
  /** A manifest was there already: ours from an earlier pass, or someone else's (see `judgement`). */
  | { existed: true; uri: string; sha256: string; versionId?: string; judgement: ManifestJudgement };

/**
 * Signs the case's manifest and writes it to the store, under the same retention as the
 * evidence. Sealing is done once: a manifest that exists already is never replaced; it is
 * judged instead, and counts only if it verifies with this key and names this case and place.
 */
export async function sealCase(
  store: EvidenceStore,
  caseId: string,
  input: SealInput,
  key: SigningKey,
  now: Date = new Date(),
  expected: { caseUid?: string } = {},
): Promise<SealResult> {
  const location = store.caseLocation(caseId);
  const statement = buildStatement({ ...input, location, sealedAt: now });
  const text = encodeManifest(statement, key);
  try {
    const stored = await store.put(caseId, MANIFEST_NAME, text, {
      contentType: 'application/vnd.dsse.envelope.v1+json',
      collectedBy: 'amber/seal',
      collectedAt: now.toISOString(),
    });
    return {
      existed: false,
      uri: stored.uri,
      sha256: stored.sha256,
      ...(stored.versionId && { versionId: stored.versionId }),
      statement,
    };
  } catch (err) {
    if (!(err instanceof ArtifactExistsError)) throw err;
    return { existed: true, ...(await judgeStoredManifest(store, caseId, key, expected.caseUid)) };
  }
}

/** Reads the case's manifest from the store and judges it; undefined when there is none. */
export async function judgeStoredManifest(
  store: EvidenceStore,
  caseId: string,
  key: VerificationKey,
  caseUid: string | undefined,
): Promise<{ uri: string; sha256: string; versionId?: string; judgement: ManifestJudgement }> {
  const existing = (await store.list(caseId)).find((a) => a.name === MANIFEST_NAME);
  if (!existing) throw new Error(`the manifest of case ${caseId} vanished while it was being judged`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of await store.get(caseId, MANIFEST_NAME)) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buf.length;
    if (size > MAX_MANIFEST_BYTES) break;
    chunks.push(buf);
  }
  const judgement =
    size > MAX_MANIFEST_BYTES
      ? {
          ours: false as const,
          reason: 'UnreadableManifest' as const,
          message: `larger than ${MAX_MANIFEST_BYTES} bytes`,
        }
      : judgeManifest(Buffer.concat(chunks).toString('utf8'), key, {
          caseId,
          location: store.caseLocation(caseId),
          ...(caseUid && { caseUid }),
        });
  return {
    uri: existing.uri,
    sha256: existing.sha256,
    ...(existing.versionId && { versionId: existing.versionId }),
    judgement,
  };
}

/** The largest manifest read into memory; a real one is kilobytes to a few megabytes. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export type ManifestJudgement =
  | { ours: true; statement: Statement }
  | {
      ours: false;
      reason: 'ForeignManifest' | 'MisboundManifest' | 'UnreadableManifest';
      message: string;
    };

/**
 * Whether a manifest found in the store is this operator's seal of this case: the signature
 * verifies with the operator's key, and the signed statement names this case (and its UID, so a
 * re-created case of the same name does not inherit an old seal) at this location.
 */
export function judgeManifest(
  text: string,
  key: VerificationKey,
  expected: { caseId: string; caseUid?: string; location: string },
): ManifestJudgement {
  let opened: OpenedManifest;
  try {
    opened = openManifest(text, key);
  } catch (err) {
    return { ours: false, reason: 'UnreadableManifest', message: (err as Error).message };
  }
  if (!opened.signature.valid)
    return { ours: false, reason: 'ForeignManifest', message: opened.signature.reason };
  const statement = opened.statement;
  if (!statement || opened.problems.length > 0)
    return { ours: false, reason: 'UnreadableManifest', message: opened.problems.join('; ') };
  const c = statement.predicate.case;
  const wrong: string[] = [];
  if (c.id !== expected.caseId) wrong.push(`names case "${c.id}", not "${expected.caseId}"`);
  if (expected.caseUid && c.uid !== expected.caseUid)
    wrong.push(`names case UID ${String(c.uid)}, not ${expected.caseUid}`);
  if (statement.predicate.location !== expected.location)
    wrong.push(`was sealed at ${statement.predicate.location}, not ${expected.location}`);
  if (wrong.length > 0) return { ours: false, reason: 'MisboundManifest', message: wrong.join('; ') };
  return { ours: true, statement };
}

export type OpenedManifest = {
  envelope: Envelope;
  /** Parsed even when the signature fails, so a report can say what the manifest claims. */
  statement?: Statement;
  signature: { valid: true; keyid: string } | { valid: false; reason: string };
  problems: string[];
};

/** Parses and checks a manifest's text: envelope shape, signature, statement schema. */
export function openManifest(text: string, key: VerificationKey): OpenedManifest {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 1)
    throw new Error(`manifest must hold exactly one DSSE envelope line, found ${lines.length}`);
  let json: unknown;
  try {
    json = JSON.parse(lines[0] as string);
  } catch (err) {
    throw new Error(`manifest is not JSON: ${(err as Error).message}`);
  }
  const parsedEnvelope = envelopeSchema.safeParse(json);
  if (!parsedEnvelope.success)
    throw new Error(`manifest is not a DSSE envelope: ${parsedEnvelope.error.message}`);
  const envelope = parsedEnvelope.data;
  const problems: string[] = [];
  if (envelope.payloadType !== INTOTO_PAYLOAD_TYPE) {
    problems.push(`payload type is "${envelope.payloadType}", expected "${INTOTO_PAYLOAD_TYPE}"`);
  }
  const verification = verifyEnvelope(envelope, key);
  const signature = verification.valid
    ? { valid: true as const, keyid: verification.keyid }
    : { valid: false as const, reason: verification.reason };
  if (!verification.valid) problems.push(`signature invalid: ${verification.reason}`);
  let statement: Statement | undefined;
  try {
    const parsed = statementSchema.safeParse(JSON.parse(verification.payload.toString('utf8')));
    if (parsed.success) statement = parsed.data;
    else problems.push(`payload is not an Amber in-toto statement: ${parsed.error.message}`);
  } catch (err) {
    problems.push(`payload is not JSON: ${(err as Error).message}`);
  }
  if (statement) problems.push(...statementConsistency(statement));
  return { envelope, statement, signature, problems };
}

/** Subjects and predicate artifacts must agree: a signed statement that contradicts itself is suspect. */
function statementConsistency(statement: Statement): string[] {
  const problems: string[] = [];
  const fromPredicate = new Map(statement.predicate.artifacts.map((a) => [a.name, a.sha256]));
  for (const s of statement.subject) {
    if (fromPredicate.get(s.name) !== s.digest.sha256) {
      problems.push(`subject "${s.name}" and the predicate disagree on its digest`);
    }
  }
  if (fromPredicate.size !== statement.subject.length)
    problems.push('subjects and predicate list different artifacts');
  return problems;
}
