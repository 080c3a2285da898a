import type { Condition } from '../api/common.js';
import type { Phase } from '../api/forensiccase.js';

/** The phase is derived from the conditions, never stored independently of them. */
export function phaseOf(conditions: Condition[] | undefined): Phase {
  const get = (type: string) => conditions?.find((c) => c.type === type);
  if (get('Valid')?.status === 'False') return 'Invalid';
  if (get('Released')?.status === 'True') return 'Released';
  const contained = get('Contained');
  if (contained?.status === 'False' && contained.reason !== 'InProgress') return 'Failed';
  if (get('EvidenceSealed')?.status === 'True') return 'Sealed';
  // Collected but not sealed (no signing key): retried, and Failed until it succeeds.
  if (get('EvidenceSealed')?.status === 'False') return 'Failed';
  if (get('EvidenceCollected')?.status === 'False' && get('EvidenceCollected')?.reason !== 'InProgress')
    return 'Failed';
  if (get('EvidenceCollected')) return 'Collecting';
  if (contained?.status === 'True') return 'Contained';
  return 'Pending';
}
