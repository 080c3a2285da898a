import type { Condition } from '../api/common.js';
import type { Phase } from '../api/forensiccase.js';
import { collectionState } from '../collection/state.js';

/**
 * The phase is derived from the conditions, never stored independently of them. Evidence that
 * was tampered with outranks everything else: it is what an investigator must see first.
 */
export function phaseOf(conditions: Condition[] | undefined): Phase {
  const get = (type: string) => conditions?.find((c) => c.type === type);
  if (get('Valid')?.status === 'False') return 'Invalid';
  const evidence = collectionState(conditions);
  if (evidence.kind === 'tampered') return 'Tampered';
  if (get('Released')?.status === 'True') return 'Released';
  const contained = get('Contained');
  if (contained?.status === 'False' && contained.reason !== 'InProgress') return 'Failed';
  switch (evidence.kind) {
    case 'sealed':
      return evidence.complete ? 'Sealed' : 'SealedIncomplete';
    // Collected but not sealed (no signing key): retried, and Failed until it succeeds.
    case 'sealPending':
    case 'failed':
      return 'Failed';
    case 'collecting':
    case 'collected':
      return 'Collecting';
    case 'idle':
      return contained?.status === 'True' ? 'Contained' : 'Pending';
  }
}
