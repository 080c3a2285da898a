import { describe, expect, it } from 'vitest';
import { phaseOf, phaseReasonOf } from '../../../src/cases/phase.js';

/** status.reason (the Reason printer column) names the condition that decided the phase. */
describe('phaseReasonOf', () => {
  const c = (type: string, status: 'True' | 'False', reason: string, message = `${type} ${reason}`) => ({
    type,
    status,
    reason,
    message,
    lastTransitionTime: '',
  });
  it.each([
    [[], 'Pending', 'Pending'],
    [[c('Valid', 'False', 'ProtectedNamespace')], 'Invalid', 'ProtectedNamespace'],
    [[c('Valid', 'True', 'SpecValid'), c('Contained', 'False', 'PodNotFound')], 'Failed', 'PodNotFound'],
    [
      [c('Contained', 'True', 'Contained'), c('EvidenceCollected', 'False', 'NoEvidenceBucket')],
      'Failed',
      'NoEvidenceBucket',
    ],
    [
      [
        c('Contained', 'True', 'Contained'),
        c('EvidenceCollected', 'True', 'Collected'),
        c('EvidenceSealed', 'False', 'SigningKeyUnavailable'),
      ],
      'Failed',
      'SigningKeyUnavailable',
    ],
    [
      [
        c('Contained', 'True', 'Contained'),
        c('EvidenceCollected', 'False', 'Incomplete'),
        c('EvidenceSealed', 'True', 'Sealed'),
      ],
      'SealedIncomplete',
      'Incomplete',
    ],
    [
      [
        c('Contained', 'True', 'Contained'),
        c('EvidenceCollected', 'True', 'Collected'),
        c('EvidenceSealed', 'False', 'EvidenceTampered'),
        c('EvidenceTampered', 'True', 'ForeignManifest'),
      ],
      'Tampered',
      'ForeignManifest',
    ],
    [
      [c('Contained', 'True', 'Contained'), c('Released', 'True', 'ReleaseRequested')],
      'Released',
      'ReleaseRequested',
    ],
  ] as const)('%j -> %s because %s', (conds, phase, reason) => {
    expect(phaseOf([...conds])).toBe(phase);
    const why = phaseReasonOf([...conds]);
    expect(why.reason).toBe(reason);
    if (conds.length > 0) expect(why.message).toContain(reason);
  });
});
