import { describe, expect, it } from 'vitest';
import type { Condition } from '../../../src/api/common.js';
import {
  desiredStatus,
  evaluatePolicy,
  IN_FORCE,
  type PolicyItem,
} from '../../../src/intake/policystatus.js';

const item = (spec: unknown, over: Partial<PolicyItem> = {}): PolicyItem => ({
  metadata: { name: 'shells', generation: 3, resourceVersion: '42' },
  spec,
  ...over,
});
const now = new Date('2026-11-28T08:00:00.123Z');

describe('evaluatePolicy', () => {
  it.each([
    ['an empty spec', {}, 'True', 'Valid', /in force: matching alerts open cases/],
    ['a dry run', { dryRun: true }, 'True', 'DryRun', /dry run.*no case is opened/],
    ['a wrong type', { priority: 'high' }, 'False', 'InvalidSpec', /priority/],
    [
      'an unknown priority threshold',
      { match: { minimumPriority: 'Severe' } },
      'False',
      'InvalidSpec',
      /match\.minimumPriority/,
    ],
    // What the CRD schema lets through (its structural schema has no URL format): only the
    // operator's own validation catches it, and the condition is how a person learns of it.
    [
      'an endpoint that is no URL',
      { evidence: { store: { endpoint: 'not a url' } } },
      'False',
      'InvalidSpec',
      /evidence\.store\.endpoint/,
    ],
    ['a missing spec', undefined, 'True', 'Valid', /in force/],
  ])('%s', (_name, spec, status, reason, message) => {
    const e = evaluatePolicy(item(spec));
    expect(e.condition).toMatchObject({ status, reason, message: expect.stringMatching(message) });
    expect(e.policy === undefined).toBe(status === 'False');
    if (e.policy) expect(e.policy.name).toBe('shells');
  });

  it('keeps the message of a very invalid spec bounded', () => {
    const spec = { match: { rules: Array.from({ length: 300 }, () => 7) } };
    expect(evaluatePolicy(item(spec)).condition.message.length).toBeLessThanOrEqual(4096);
  });
});

describe('desiredStatus', () => {
  const inForce = (over: Partial<Condition> = {}): Condition => ({
    type: IN_FORCE,
    status: 'True',
    reason: 'Valid',
    message: 'in force: matching alerts open cases',
    lastTransitionTime: '2026-01-01T00:00:00Z',
    observedGeneration: 3,
    ...over,
  });
  const valid = evaluatePolicy(item({}));
  const invalid = evaluatePolicy(item({ priority: 'high' }));

  it.each([
    ['no status yet', undefined, valid, 'write', '2026-11-28T08:00:00Z'],
    ['already says so', { observedGeneration: 3, conditions: [inForce()] }, valid, 'none', undefined],
    [
      'an older generation',
      { observedGeneration: 2, conditions: [inForce({ observedGeneration: 2 })] },
      valid,
      'write',
      // Same status: the transition time stays.
      '2026-01-01T00:00:00Z',
    ],
    [
      'a new message, same status',
      { observedGeneration: 3, conditions: [inForce({ message: 'old words' })] },
      valid,
      'write',
      '2026-01-01T00:00:00Z',
    ],
    [
      'in force, now invalid',
      { observedGeneration: 3, conditions: [inForce()] },
      invalid,
      'write',
      '2026-11-28T08:00:00Z',
    ],
  ] as const)('%s', (_name, status, evaluation, expected, transition) => {
    const out = desiredStatus(item({}, { status }), evaluation, now);
    if (expected === 'none') return expect(out).toBeUndefined();
    expect(out).toMatchObject({
      observedGeneration: 3,
      conditions: [
        {
          type: IN_FORCE,
          status: evaluation.condition.status,
          reason: evaluation.condition.reason,
          observedGeneration: 3,
          lastTransitionTime: transition,
        },
      ],
    });
  });

  it('keeps conditions of other types', () => {
    const other: Condition = {
      type: 'Audited',
      status: 'True',
      reason: 'X',
      message: '',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    };
    const out = desiredStatus(item({}, { status: { conditions: [other] } }), valid, now);
    expect(out?.conditions?.map((c) => c.type)).toEqual(['Audited', IN_FORCE]);
  });
});
