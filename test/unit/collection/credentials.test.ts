import { describe, expect, it } from 'vitest';
import {
  credentialSeconds,
  credentialsValidUntil,
  retentionWindow,
  JobScopeError,
  jobKeyPrefixes,
  sessionPolicy,
  type JobScope,
} from '../../../src/collection/credentials.js';

const scope = (over: Partial<JobScope> = {}): JobScope => ({
  bucket: 'evidence',
  prefix: 'amber/',
  caseId: 'case-1',
  containerPrefix: 'containers/0123456789ab',
  legalHold: false,
  lockMode: 'COMPLIANCE',
  retentionDays: 30,
  ...over,
});

const window = retentionWindow(new Date('2026-11-28T10:00:00Z'), 30, 900);

describe("a collection Job's session policy", () => {
  it('allows writing new objects under its own container prefix and digest records, nothing else', () => {
    const policy = JSON.parse(sessionPolicy(scope(), window)) as {
      Statement: { Effect: string; Action: string[]; Resource: string[] }[];
    };
    const resources = [
      'arn:aws:s3:::evidence/amber/case-1/containers/0123456789ab/*',
      'arn:aws:s3:::evidence/amber/case-1/.amber/digests/containers/0123456789ab/*',
    ];
    expect(policy.Statement).toEqual([
      {
        Sid: 'AmberCollectorWriteOwnPrefix',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload'],
        Resource: resources,
      },
      {
        Sid: 'AmberCollectorLockAsTheCase',
        Effect: 'Allow',
        Action: ['s3:PutObjectRetention'],
        Resource: resources,
        Condition: {
          StringEquals: { 's3:object-lock-mode': 'COMPLIANCE' },
          DateGreaterThanEquals: { 's3:object-lock-retain-until-date': '2026-12-28T09:45:00.000Z' },
          DateLessThanEquals: { 's3:object-lock-retain-until-date': '2026-12-28T10:30:00.000Z' },
        },
      },
    ]);
  });

  it.each([
    ['no read', /s3:Get/],
    ['no list', /s3:List/],
    ['no delete', /s3:Delete/],
    ['no governance bypass', /Bypass/],
    ['no wildcard action', /"s3:\*"|"\*"/],
  ])('%s', (_what, forbidden) => {
    expect(sessionPolicy(scope({ legalHold: true }), window)).not.toMatch(forbidden);
  });

  it('adds the legal hold permission only when the case asks for a hold', () => {
    expect(sessionPolicy(scope(), window)).not.toContain('s3:PutObjectLegalHold');
    expect(sessionPolicy(scope({ legalHold: true }), window)).toContain('s3:PutObjectLegalHold');
  });

  it.each([
    ['', 'case-1', ['case-1/containers/0123456789ab/', 'case-1/.amber/digests/containers/0123456789ab/']],
    ['/a/b/', 'c', ['a/b/c/containers/0123456789ab/', 'a/b/c/.amber/digests/containers/0123456789ab/']],
  ])('prefix %j, case %s -> %j (the manifest key is never under them)', (prefix, caseId, expected) => {
    const prefixes = jobKeyPrefixes(scope({ prefix, caseId }));
    expect(prefixes).toEqual(expected);
    const manifest = `${prefix.replace(/^\/+|\/+$/g, '')}/${caseId}/manifest.intoto.jsonl`.replace(/^\//, '');
    for (const p of prefixes) expect(manifest.startsWith(p)).toBe(false);
  });

  it.each([
    ['prefix', { prefix: 'amber/*' }],
    ['prefix', { prefix: 'a?b' }],
    ['bucket', { bucket: 'evi*' }],
    ['prefix', { prefix: '${aws:username}' }],
  ])('refuses a %s with IAM wildcards or variables (%j): it would widen the grant', (_w, over) => {
    expect(() => sessionPolicy(scope(over), window)).toThrow(JobScopeError);
  });

  it("refuses a policy over STS's 2048 characters instead of sending it", () => {
    expect(() => sessionPolicy(scope({ prefix: 'p'.repeat(1100) }), window)).toThrow(/over STS's 2048/);
  });
});

describe('credential lifetime', () => {
  it.each([
    [600, 3600, 900],
    [10, 3600, 900],
    [1200, 3600, 1260],
    [840, 3600, 900],
    [841, 3600, 901],
    [86_400, 3600, 3600],
    [86_400, 43_200, 43_200],
  ])('Job deadline %i s, role maximum %i s -> %i s', (deadline, max, seconds) => {
    expect(credentialSeconds(deadline, max)).toBe(seconds);
  });
});

describe('until when the Jobs of a case can write under it', () => {
  const t = (iso: string) => Date.parse(iso);
  it.each<[string, Parameters<typeof credentialsValidUntil>[0], number | undefined]>([
    ['no Job: nothing ever left the operator', [], undefined],
    ['a Job still suspended: its credentials never reached a node', [{ suspended: true }], undefined],
    [
      'the latest annotated expiry',
      [
        { suspended: false, expiresAt: '2026-11-28T10:15:00Z' },
        { suspended: false, expiresAt: '2026-11-28T10:30:00Z', startedAt: '2026-11-28T10:00:00Z' },
      ],
      t('2026-11-28T10:30:00Z'),
    ],
    [
      'a Job resumed without the annotation: its start plus the longest lifetime',
      [{ suspended: false, startedAt: '2026-11-28T10:00:00Z' }],
      t('2026-11-28T11:00:00Z'),
    ],
    [
      'an annotated Job suspended again still counts',
      [{ suspended: true, expiresAt: '2026-11-28T10:15:00Z' }],
      t('2026-11-28T10:15:00Z'),
    ],
    [
      'a garbled annotation falls back to the start',
      [{ suspended: false, expiresAt: 'soon', startedAt: '2026-11-28T10:00:00Z' }],
      t('2026-11-28T11:00:00Z'),
    ],
    ['a Job that ran and tells nothing cannot be bounded', [{ suspended: false }], Number.POSITIVE_INFINITY],
  ])('%s', (_what, jobs, until) => {
    expect(credentialsValidUntil(jobs, 3600)).toBe(until);
  });
});

describe('the retain-until dates a Job may write', () => {
  it('is the case retention from any moment the credentials live, widened by the clock skew', () => {
    const w = retentionWindow(new Date('2026-11-28T10:00:00Z'), 1, 900);
    expect(w.from.toISOString()).toBe('2026-11-29T09:45:00.000Z');
    expect(w.to.toISOString()).toBe('2026-11-29T10:30:00.000Z');
  });
});
