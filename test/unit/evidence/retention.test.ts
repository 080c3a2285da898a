import { describe, expect, it } from 'vitest';
import { parseRetentionPeriod, retainUntil, retentionSchema } from '../../../src/evidence/retention.js';

describe('retention period', () => {
  it.each([
    ['90d', 90 * 86_400_000],
    ['7y', 7 * 365 * 86_400_000],
    ['12h', 12 * 3_600_000],
    ['2w', 14 * 86_400_000],
    ['30s', 30_000],
    [' 1d ', 86_400_000],
  ])('parses %j', (text, ms) => {
    expect(parseRetentionPeriod(text)).toBe(ms);
  });

  it.each(['', '90', 'd', '0d', '-1d', '1.5d', '90 days', '101y', '1x'])('refuses %j', (text) => {
    expect(() => parseRetentionPeriod(text)).toThrow(/invalid retention period/);
  });

  it('computes retain-until from now, rounded up to a whole second', () => {
    const now = new Date('2026-01-01T00:00:00.250Z');
    expect(retainUntil('1d', now).toISOString()).toBe('2026-01-02T00:00:01.000Z');
  });

  it('validates a retention spec with zod and defaults legal hold to off', () => {
    expect(retentionSchema.parse({ mode: 'COMPLIANCE', period: '90d' })).toEqual({
      mode: 'COMPLIANCE',
      period: '90d',
      legalHold: false,
    });
    expect(retentionSchema.safeParse({ mode: 'compliance', period: '90d' }).success).toBe(false);
    expect(retentionSchema.safeParse({ mode: 'GOVERNANCE', period: 'forever' }).success).toBe(false);
  });
});
