import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { s3CaseKey } from '../evidence/s3-store.js';
import { bookkeepingDir } from '../evidence/names.js';

/**
 * Per-Job S3 credentials (ADR 0009). The collection Job runs on the suspect's node, where the
 * attacker may be root and read everything the Job holds. So the Job never gets the operator's
 * credentials: the operator asks STS (AWS, or MinIO's own AssumeRole) for short-lived
 * credentials whose session policy allows exactly one thing, writing new objects under this
 * container's own prefix of this case. No read, no list, no other prefix, no manifest: what the
 * node can do with them is what the collector had to do anyway.
 */

/** Where one collection Job may write. */
export interface JobScope {
  bucket: string;
  /** The store's key prefix (spec.evidence.store.prefix). */
  prefix: string;
  caseId: string;
  /** The container's prefix inside the case, e.g. `containers/0123456789ab`. */
  containerPrefix: string;
  legalHold: boolean;
  /** The case's retention: the only lock the Job's writes may carry. */
  lockMode: 'COMPLIANCE' | 'GOVERNANCE';
  retentionDays: number;
}

/** The retain-until dates a Job's writes may carry. */
export interface RetentionWindow {
  from: Date;
  to: Date;
}

/** Clocks of the node, the store and the operator may disagree this much. */
const CLOCK_SKEW_MS = 15 * 60 * 1000;

/**
 * A write at any time between now and the credentials' expiry, locked for the case's days, is
 * locked until a date in this window (widened by the clock skew S3 itself tolerates).
 */
export function retentionWindow(now: Date, retentionDays: number, lifetimeSeconds: number): RetentionWindow {
  const days = retentionDays * 86_400_000;
  return {
    from: new Date(now.getTime() + days - CLOCK_SKEW_MS),
    to: new Date(now.getTime() + lifetimeSeconds * 1000 + days + CLOCK_SKEW_MS),
  };
}

/** STS and AWS cap inline session policies at 2048 characters. */
export const MAX_SESSION_POLICY_CHARS = 2048;

/** A scope that cannot be expressed as a policy: terminal for the case, not retried. */
export class JobScopeError extends Error {}

/**
 * The key prefixes the Job writes: its artifacts, and the store's digest record of each
 * (`<case>/.amber/digests/<name>.json`, see S3EvidenceStore). Both end in "/", so a sibling
 * prefix (`containers/0123456789ab-x`) is not covered.
 */
export function jobKeyPrefixes(scope: JobScope): string[] {
  const caseKey = s3CaseKey(scope.prefix, scope.caseId);
  return [
    `${caseKey}/${scope.containerPrefix}/`,
    `${caseKey}/${bookkeepingDir}/digests/${scope.containerPrefix}/`,
  ];
}

/**
 * The session policy: PutObject (multipart included: CreateMultipartUpload, UploadPart and
 * CompleteMultipartUpload are authorised as s3:PutObject), AbortMultipartUpload to clean up a
 * failed upload, PutObjectRetention because every object is written with its retention (S3
 * requires the permission for the x-amz-object-lock-* headers) but only with the case's mode
 * and days, and PutObjectLegalHold only when the case asks for a legal hold. No
 * BypassGovernanceRetention, no Get, no List, no Delete. A session policy cannot cap bytes
 * (ADR 0009: the bucket quota and the collector's caps do).
 */
export function sessionPolicy(scope: JobScope, window: RetentionWindow): string {
  for (const [what, value] of [
    ['bucket', scope.bucket],
    ['prefix', scope.prefix],
    ['container prefix', scope.containerPrefix],
  ] as const)
    // IAM resource ARNs treat * and ? as wildcards: such a name would widen the grant.
    if (/[*?$]/.test(value))
      throw new JobScopeError(
        `the evidence ${what} "${value}" contains * ? or $, which a policy cannot name exactly`,
      );
  const resources = jobKeyPrefixes(scope).map((p) => `arn:aws:s3:::${scope.bucket}/${p}*`);
  const actions = ['s3:PutObject', 's3:AbortMultipartUpload'];
  if (scope.legalHold) actions.push('s3:PutObjectLegalHold');
  const policy = JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      { Sid: 'AmberCollectorWriteOwnPrefix', Effect: 'Allow', Action: actions, Resource: resources },
      {
        // Every write carries a lock, and S3 and MinIO authorise its headers as
        // s3:PutObjectRetention with the request's lock mode and retain-until date: the case's
        // mode, and a date the case's retention gives to a write made while the credentials live.
        // Without them the node could lock garbage for a century in COMPLIANCE mode (storage no
        // one can ever free) or its evidence for an hour. (MinIO sets
        // s3:object-lock-remaining-retention-days only for the PutObjectRetention call itself,
        // not for a PutObject's headers: a condition on it refuses every write.)
        Sid: 'AmberCollectorLockAsTheCase',
        Effect: 'Allow',
        Action: ['s3:PutObjectRetention'],
        Resource: resources,
        Condition: {
          StringEquals: { 's3:object-lock-mode': scope.lockMode },
          DateGreaterThanEquals: { 's3:object-lock-retain-until-date': window.from.toISOString() },
          DateLessThanEquals: { 's3:object-lock-retain-until-date': window.to.toISOString() },
        },
      },
    ],
  });
  if (policy.length > MAX_SESSION_POLICY_CHARS)
    throw new JobScopeError(
      `the session policy for this case is ${policy.length} characters, over STS's ${MAX_SESSION_POLICY_CHARS}: shorten the evidence prefix`,
    );
  return policy;
}

/** STS's shortest session, on AWS and on MinIO alike (MinIO refuses DurationSeconds below it). */
export const STS_MIN_SECONDS = 900;

/**
 * Between minting and the Job's start (its activeDeadlineSeconds counts from there): the Secret
 * is created and the Job resumed, a few API calls. The Job is killed at its deadline, report
 * included (the collector keeps its own margin inside the deadline), so nothing legitimate
 * writes after it; every second beyond is the node's alone, and the seal waits for all of them.
 */
export const CREDENTIAL_START_MARGIN_SECONDS = 60;

/**
 * How long the credentials live: the Job's deadline plus the start margin, within STS's bounds
 * (900 s at least; the role's maximum session duration at most).
 */
export function credentialSeconds(jobDeadlineSeconds: number, maxSeconds: number): number {
  return Math.min(
    maxSeconds,
    Math.max(STS_MIN_SECONDS, jobDeadlineSeconds + CREDENTIAL_START_MARGIN_SECONDS),
  );
}

/** On a collection Job: when the credentials minted for it expire (ISO 8601), written when it is resumed. */
export const CREDENTIALS_EXPIRE_ANNOTATION = 'amber.io/credentials-expire-at';

/** What the seal knows of one collection Job of the case. */
export interface JobCredentialsView {
  /** Still suspended: its credentials (if any were minted) never reached a node. */
  suspended: boolean;
  /** The CREDENTIALS_EXPIRE_ANNOTATION value. */
  expiresAt?: string;
  /** status.startTime, else creationTimestamp: no credential of it was minted before. */
  startedAt?: string;
}

/**
 * Until when a credential the case's Jobs handed to a node may still write under the case: the
 * latest expiry. A Job resumed without the annotation (a crash between the patch's parts cannot
 * happen, it is one patch; an older operator did not write it) counts at the longest lifetime
 * the operator could have minted, from its start. Milliseconds since the epoch (Infinity: a Job
 * that ran and tells neither); undefined: no credential ever left the operator.
 * Pure: tested with tables.
 */
export function credentialsValidUntil(jobs: JobCredentialsView[], maxSeconds: number): number | undefined {
  let until: number | undefined;
  for (const j of jobs) {
    const annotated = j.expiresAt ? Date.parse(j.expiresAt) : NaN;
    let t: number;
    if (!Number.isNaN(annotated)) t = annotated;
    else if (j.suspended) continue;
    else {
      const started = j.startedAt ? Date.parse(j.startedAt) : NaN;
      // Nothing tells when it started: its credentials cannot be bounded, so the seal cannot pass.
      t = Number.isNaN(started) ? Number.POSITIVE_INFINITY : started + maxSeconds * 1000;
    }
    until = until === undefined ? t : Math.max(until, t);
  }
  return until;
}

export interface JobCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration?: Date;
}

export interface StsSettings {
  /** STS endpoint: MinIO answers AssumeRole at its root URL; AWS's regional endpoint when absent. */
  endpoint?: string;
  region: string;
  /** The operator's own credentials; the SDK's default chain when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** The role assumed on AWS (its policy must allow at least what the session policy asks); MinIO ignores it. */
  roleArn: string;
}

/** Asks STS for a Job's credentials. One STS client per endpoint and region, shared. */
export class JobCredentialsMinter {
  private readonly clients = new Map<string, STSClient>();

  async mint(
    sts: StsSettings,
    scope: JobScope,
    sessionName: string,
    durationSeconds: number,
    now: Date = new Date(),
  ): Promise<JobCredentials> {
    const policy = sessionPolicy(scope, retentionWindow(now, scope.retentionDays, durationSeconds));
    const key = `${sts.endpoint ?? ''}|${sts.region}`;
    let client = this.clients.get(key);
    if (!client) {
      client = new STSClient({
        region: sts.region,
        maxAttempts: 5,
        // A store that stops answering fails the attempt (and the reconcile retries), never
        // holds the case's worker.
        requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
        ...(sts.endpoint && { endpoint: sts.endpoint }),
        ...(sts.credentials && { credentials: sts.credentials }),
      });
      this.clients.set(key, client);
    }
    const res = await client.send(
      new AssumeRoleCommand({
        RoleArn: sts.roleArn,
        RoleSessionName: sessionName.slice(0, 64),
        Policy: policy,
        DurationSeconds: durationSeconds,
      }),
    );
    const c = res.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken)
      throw new Error('STS AssumeRole answered without credentials');
    return {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      ...(c.Expiration && { expiration: c.Expiration }),
    };
  }

  close(): void {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }
}
