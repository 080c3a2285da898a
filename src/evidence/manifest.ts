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

export const predicateSchema = z.object({
  case: caseInfoSchema,
  location: z.string(),
  sealedAt: z.string(),
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
      sealedAt: input.sealedAt.toISOString(),
      artifacts: artifacts.map((a) => ({
        name: a.name,
        uri: a.uri,
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

export interface SealResult {
  uri: string;
  sha256: string;
  /** True when the case had been sealed already (a resumed reconcile): the existing manifest stands. */
  existed: boolean;
}

/**
 * Signs the case's manifest and writes it to the store, under the same retention as the
 * evidence. Sealing is done once: if a manifest exists already, it is kept and described.
 */
export async function sealCase(
  store: EvidenceStore,
  caseId: string,
  input: SealInput,
  key: SigningKey,
  now: Date = new Date(),
): Promise<SealResult> {
  const statement = buildStatement({ ...input, location: store.caseLocation(caseId), sealedAt: now });
  const text = encodeManifest(statement, key);
  try {
    const stored = await store.put(caseId, MANIFEST_NAME, text, {
      contentType: 'application/vnd.dsse.envelope.v1+json',
      collectedBy: 'amber/seal',
      collectedAt: now.toISOString(),
    });
    return { uri: stored.uri, sha256: stored.sha256, existed: false };
  } catch (err) {
    if (!(err instanceof ArtifactExistsError)) throw err;
    const existing = (await store.list(caseId)).find((a) => a.name === MANIFEST_NAME);
    if (!existing) throw err;
    return { uri: existing.uri, sha256: existing.sha256, existed: true };
  }
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
