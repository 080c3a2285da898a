import { z } from 'zod';

export const retentionModeSchema = z.enum(['COMPLIANCE', 'GOVERNANCE']);
export type RetentionMode = z.infer<typeof retentionModeSchema>;

const unitMs = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  // A retention "year" is 365 days: S3's own bucket default uses whole days too.
  y: 365 * 86_400_000,
} as const;

/** A century: beyond it a typo ("9000y") is more likely than an intent, and COMPLIANCE cannot be undone. */
const maxRetentionMs = 100 * unitMs.y;

const periodPattern = /^(\d{1,6})([smhdwy])$/;

/**
 * Parses a retention period such as "90d", "7y", "12h" into milliseconds. Seconds and minutes
 * exist for tests; production periods are days or years.
 */
export function parseRetentionPeriod(period: string): number {
  const match = periodPattern.exec(period.trim());
  if (!match) {
    throw new Error(
      `invalid retention period "${period}": expected a positive integer and a unit (s, m, h, d, w, y), e.g. "90d"`,
    );
  }
  const ms = Number(match[1]) * unitMs[match[2] as keyof typeof unitMs];
  if (ms <= 0) throw new Error(`invalid retention period "${period}": must be longer than zero`);
  if (ms > maxRetentionMs) throw new Error(`invalid retention period "${period}": longer than 100 years`);
  return ms;
}

export const retentionPeriodSchema = z.string().refine(
  (p) => {
    try {
      parseRetentionPeriod(p);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected a retention period such as "90d" or "7y" (units s, m, h, d, w, y; at most 100y)' },
);

/** How long and how strictly the store keeps each artifact. */
export const retentionSchema = z.object({
  mode: retentionModeSchema,
  period: retentionPeriodSchema,
  /** A legal hold has no end date: it stays until someone with the permission lifts it. */
  legalHold: z.boolean().default(false),
});
export type Retention = z.infer<typeof retentionSchema>;

/** The retain-until date of an object written at `now`. Whole seconds: S3 drops the milliseconds. */
export function retainUntil(period: string, now: Date = new Date()): Date {
  const until = now.getTime() + parseRetentionPeriod(period);
  return new Date(Math.ceil(until / 1000) * 1000);
}
