import type { Condition } from '../api/common.js';
import type { Phase } from '../api/forensiccase.js';
import { collectionState } from '../collection/state.js';

/**
 * The phase is derived from the conditions, never stored independently of them. Evidence that
 * was tampered with outranks everything else: it is what an investigator must see first.
 */
export function phaseOf(conditions: Condition[] | undefined): Phase {
  return decide(conditions).phase;
}

/**
 * Why the case is in its phase: the reason and message of the condition that decided it, so
 * `kubectl get fcase` says why a case Failed or was sealed incomplete without a describe.
 */
export function phaseReasonOf(conditions: Condition[] | undefined): { reason: string; message: string } {
  const { phase, by } = decide(conditions);
  return by ? { reason: by.reason, message: by.message } : { reason: phase, message: '' };
}

function decide(conditions: Condition[] | undefined): { phase: Phase; by?: Condition } {
  const get = (type: string) => conditions?.find((c) => c.type === type);
  const valid = get('Valid');
  if (valid?.status === 'False') return { phase: 'Invalid', by: valid };
  const evidence = collectionState(conditions);
  if (evidence.kind === 'tampered') return { phase: 'Tampered', by: get('EvidenceTampered') };
  const released = get('Released');
  if (released?.status === 'True') return { phase: 'Released', by: released };
  const contained = get('Contained');
  if (contained?.status === 'False' && contained.reason !== 'InProgress')
    return { phase: 'Failed', by: contained };
  switch (evidence.kind) {
    case 'sealed':
      return evidence.complete
        ? { phase: 'Sealed', by: get('EvidenceSealed') }
        : { phase: 'SealedIncomplete', by: get('EvidenceCollected') };
    // Collected but not sealed (no signing key): retried, and Failed until it succeeds.
    case 'sealPending':
      return { phase: 'Failed', by: get('EvidenceSealed') };
    case 'failed':
      return { phase: 'Failed', by: get('EvidenceCollected') };
    case 'collecting':
    case 'collected':
      return { phase: 'Collecting', by: get('EvidenceCollected') };
    case 'idle':
      return { phase: contained?.status === 'True' ? 'Contained' : 'Pending', by: contained };
  }
}
