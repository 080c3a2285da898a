import type { Readable } from 'node:stream';

/**
 * Where Amber seals evidence. Two implementations share this interface: S3 with Object Lock
 * (production) and a local directory (local default setup, offline work).
 *
 * Evidence is append-only: `put` never overwrites an existing key, and nothing here deletes.
 */
export interface EvidenceStore {
  /** A URI naming the case's location, e.g. `s3://bucket/prefix/cases/<case>/` or `file:///dir/<case>/`. */
  caseLocation(caseId: string): string;

  /**
   * Streams `body` to `<case>/<name>` while computing its SHA-256; the store verifies the digest
   * (x-amz-checksum-sha256 on S3). Memory stays constant whatever the size of the body.
   * Throws ArtifactExistsError when the key exists already.
   */
  put(
    caseId: string,
    name: string,
    body: Readable | Buffer | string,
    meta?: ArtifactMetadata,
  ): Promise<StoredArtifact>;

  /** Reads an artifact back (for verify and reports). */
  get(caseId: string, name: string): Promise<Readable>;

  /** Every artifact of a case, with what the store says of it (size, digest, retention). */
  list(caseId: string): Promise<StoredArtifact[]>;

  /**
   * Every artifact of a case, and every object under it that is not a well-formed artifact or
   * was touched after it was written. Never throws for what it finds under the case (anyone who
   * could write there could otherwise stop the seal and `amber verify`); only for a store it
   * cannot read at all.
   */
  inventory(caseId: string): Promise<Inventory>;
}

export interface Inventory {
  /** Artifacts under well-formed names, untainted or not (see `problems[].taints`). */
  artifacts: StoredArtifact[];
  problems: StoreProblem[];
}

/**
 * Something under a case that Amber did not write as it is: a key no artifact name can take, a
 * digest record that is not one, a key written twice or hidden by a delete marker.
 */
export interface StoreProblem {
  /** The key relative to the case (bounded in length, for the manifest and status). */
  what: string;
  reason: string;
  /** The artifact this problem makes untrustworthy: the seal never signs it. */
  taints?: string;
}

/**
 * A name found in the store, made fit for a manifest, a status and an investigator's terminal:
 * bounded, and with control characters (an escape sequence in a key the node chose) spelled out.
 */
export function problemName(name: string): string {
  const bounded = name.length > 256 ? `${name.slice(0, 256)}... (${name.length} characters)` : name;
  return bounded.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

/** What collected an artifact, recorded in the signed manifest. */
export interface ArtifactMetadata {
  contentType?: string;
  /** e.g. `collector/processes`, `operator/pod-yaml`. */
  collectedBy?: string;
  node?: string;
  containerId?: string;
  collectedAt?: string;
}

export interface StoredArtifact {
  name: string;
  uri: string;
  size: number;
  sha256: string;
  /** ISO time until which the store refuses deletion; absent for a local directory. */
  retainUntil?: string;
  retentionMode?: 'COMPLIANCE' | 'GOVERNANCE';
  legalHold?: boolean;
  /** S3 only: the object version written (Object Lock buckets are versioned). */
  versionId?: string;
  metadata?: ArtifactMetadata;
}

export class ArtifactExistsError extends Error {
  constructor(readonly uri: string) {
    super(`artifact already exists and evidence is never overwritten: ${uri}`);
    this.name = 'ArtifactExistsError';
  }
}
