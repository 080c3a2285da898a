import { z } from 'zod';

/**
 * Case ids become one path segment (a directory or an S3 key segment); they are Kubernetes
 * object names in practice.
 */
export const caseIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/,
    'a case id is one path segment: letters, digits, ".", "_", "-"',
  );

/**
 * Artifact names are relative paths ("logs/app.log"). Every segment starts with a letter or
 * digit, which rules out "..", absolute paths and the store's own ".amber/" bookkeeping.
 */
export const artifactNameSchema = z
  .string()
  .max(512)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/,
    'an artifact name is a relative path whose segments start with a letter or digit (no "..", no leading "/")',
  );

/** Per-case bookkeeping (digest records, partial files) lives here, apart from the artifacts. */
export const bookkeepingDir = '.amber';

export function parseCaseId(caseId: string): string {
  const r = caseIdSchema.safeParse(caseId);
  if (!r.success) throw new Error(`invalid case id "${caseId}": ${r.error.issues[0]?.message}`);
  return r.data;
}

export function parseArtifactName(name: string): string {
  const r = artifactNameSchema.safeParse(name);
  if (!r.success) throw new Error(`invalid artifact name "${name}": ${r.error.issues[0]?.message}`);
  return r.data;
}

/**
 * What the store records next to each artifact: the whole-object SHA-256 computed while
 * streaming (S3's own multipart checksum is composite, a digest of part digests, so it cannot
 * stand in for it), plus who collected it.
 */
export const digestRecordSchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  storedAt: z.string(),
  metadata: z
    .object({
      contentType: z.string().optional(),
      collectedBy: z.string().optional(),
      node: z.string().optional(),
      containerId: z.string().optional(),
      collectedAt: z.string().optional(),
    })
    .optional(),
  /** S3 only: the version id written and the store's own checksum (composite for multipart). */
  versionId: z.string().optional(),
  storeChecksumSha256: z.string().optional(),
  storeChecksumCrc32: z.string().optional(),
});
export type DigestRecord = z.infer<typeof digestRecordSchema>;

/** A digest record read back, or what is wrong with it (whoever could write there wrote it). */
export function parseDigestRecord(text: string): DigestRecord | { corrupt: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { corrupt: `not JSON: ${(err as Error).message.slice(0, 200)}` };
  }
  const parsed = digestRecordSchema.safeParse(json);
  return parsed.success ? parsed.data : { corrupt: parsed.error.message.slice(0, 300) };
}
