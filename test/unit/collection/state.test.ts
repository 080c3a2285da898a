import { describe, expect, it } from 'vitest';
import type { Condition } from '../../../src/api/common.js';
import { phaseOf } from '../../../src/cases/phase.js';
import { collectionState, type CollectionState } from '../../../src/collection/state.js';

const c = (type: string, status: Condition['status'], reason: string): Condition => ({
  type,
  status,
  reason,
  message: '',
  lastTransitionTime: '2026-11-28T00:00:00Z',
});
const contained = c('Contained', 'True', 'Contained');

describe('the collection state, derived from the conditions in one place', () => {
  it.each<[string, Condition[], CollectionState, string]>([
    ['nothing yet', [contained], { kind: 'idle' }, 'Contained'],
    ['not contained yet', [], { kind: 'idle' }, 'Pending'],
    [
      'collecting',
      [contained, c('EvidenceCollected', 'False', 'InProgress')],
      { kind: 'collecting' },
      'Collecting',
    ],
    [
      'collected, not sealed yet',
      [contained, c('EvidenceCollected', 'True', 'Collected')],
      { kind: 'collected', complete: true },
      'Collecting',
    ],
    [
      'incomplete, not sealed yet',
      [contained, c('EvidenceCollected', 'False', 'Incomplete')],
      { kind: 'collected', complete: false },
      'Collecting',
    ],
    [
      'terminal failure before any seal',
      [contained, c('EvidenceCollected', 'False', 'NothingCollected')],
      { kind: 'failed', reason: 'NothingCollected' },
      'Failed',
    ],
    [
      'no signing key yet: retried, Failed meanwhile',
      [
        contained,
        c('EvidenceCollected', 'True', 'Collected'),
        c('EvidenceSealed', 'False', 'SigningKeyUnavailable'),
      ],
      { kind: 'sealPending', complete: true, reason: 'SigningKeyUnavailable' },
      'Failed',
    ],
    [
      'sealed, complete',
      [contained, c('EvidenceCollected', 'True', 'Collected'), c('EvidenceSealed', 'True', 'Sealed')],
      { kind: 'sealed', complete: true },
      'Sealed',
    ],
    [
      'sealed, incomplete: the phase says so',
      [contained, c('EvidenceCollected', 'False', 'Incomplete'), c('EvidenceSealed', 'True', 'Sealed')],
      { kind: 'sealed', complete: false },
      'SealedIncomplete',
    ],
    [
      'tampered: never Sealed, whatever else holds',
      [
        contained,
        c('EvidenceCollected', 'True', 'Collected'),
        c('EvidenceSealed', 'False', 'EvidenceTampered'),
        c('EvidenceTampered', 'True', 'ForeignManifest'),
      ],
      { kind: 'tampered', reason: 'ForeignManifest' },
      'Tampered',
    ],
    [
      'tampered outranks released',
      [contained, c('Released', 'True', 'Released'), c('EvidenceTampered', 'True', 'MisboundManifest')],
      { kind: 'tampered', reason: 'MisboundManifest' },
      'Tampered',
    ],
    [
      'released after a seal',
      [
        contained,
        c('EvidenceCollected', 'True', 'Collected'),
        c('EvidenceSealed', 'True', 'Sealed'),
        c('Released', 'True', 'Released'),
      ],
      { kind: 'sealed', complete: true },
      'Released',
    ],
  ])('%s', (_name, conditions, state, phase) => {
    expect(collectionState(conditions)).toEqual(state);
    expect(phaseOf(conditions)).toBe(phase);
  });
});
