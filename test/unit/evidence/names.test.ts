import { describe, expect, it } from 'vitest';
import { parseCaseLocation } from '../../../src/evidence/location.js';
import { parseArtifactName, parseCaseId } from '../../../src/evidence/names.js';

describe('artifact names', () => {
  it.each(['processes.json', 'logs/app/0.log', 'rootfs-diff.tar', 'a', 'Z9_.-x'])('accepts %j', (n) => {
    expect(parseArtifactName(n)).toBe(n);
  });

  it.each([
    '',
    '/etc/passwd',
    '../x',
    'a/../b',
    'a//b',
    '.amber/digests/x.json',
    'a/.hidden',
    'a/',
    'a b',
    'x\0',
  ])('refuses %j', (n) => {
    expect(() => parseArtifactName(n)).toThrow(/invalid artifact name/);
  });

  it('case ids are a single segment', () => {
    expect(parseCaseId('case-2026.01')).toBe('case-2026.01');
    expect(() => parseCaseId('a/b')).toThrow(/invalid case id/);
    expect(() => parseCaseId('..')).toThrow(/invalid case id/);
  });
});

describe('case location', () => {
  it('splits an S3 URI into bucket, prefix and case', () => {
    expect(parseCaseLocation('s3://evidence/amber/cases/case-1/')).toEqual({
      kind: 's3',
      bucket: 'evidence',
      prefix: 'amber/cases',
      caseId: 'case-1',
    });
    expect(parseCaseLocation('s3://evidence/case-1')).toEqual({
      kind: 's3',
      bucket: 'evidence',
      prefix: '',
      caseId: 'case-1',
    });
  });

  it('refuses an S3 URI without a case', () => {
    expect(() => parseCaseLocation('s3://evidence')).toThrow(/expected s3:\/\/bucket/);
  });

  it('takes a directory or a file URL', () => {
    expect(parseCaseLocation('/var/evidence/case-1/')).toEqual({
      kind: 'local',
      root: '/var/evidence',
      caseId: 'case-1',
    });
    expect(parseCaseLocation('file:///var/evidence/case-1')).toEqual({
      kind: 'local',
      root: '/var/evidence',
      caseId: 'case-1',
    });
  });
});
