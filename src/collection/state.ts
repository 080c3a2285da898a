import type { Condition } from '../api/common.js';

/**
 * Where a case's evidence stands, derived from its conditions in this one place. The pipeline
 * decides its next step from it and `phaseOf` names it; nothing else reads condition reasons.
 *
 * The conditions stay the stored truth (status is rebuilt from the world on every pass); the
 * reasons below are the only vocabulary the pipeline writes into them.
 */
export type CollectionState =
  /** Not started: the case is not contained yet, or collection is off. */
  | { kind: 'idle' }
  | { kind: 'collecting' }
  /** Terminal before anything could be sealed (no bucket, nothing stored, ...). */
  | { kind: 'failed'; reason: string }
  /** Every collector is done; the seal comes next. `complete` is false when anything is missing. */
  | { kind: 'collected'; complete: boolean }
  /** Collected, and sealing failed for a reason that may pass (no signing key yet): retried. */
  | { kind: 'sealPending'; complete: boolean; reason: string }
  /** Someone else wrote to the case where only the operator writes: never sealed. */
  | { kind: 'tampered'; reason: string }
  | { kind: 'sealed'; complete: boolean };

/** Reasons of EvidenceCollected. */
export const COLLECTED = {
  inProgress: 'InProgress',
  collected: 'Collected',
  incomplete: 'Incomplete',
} as const;

/** Reasons of EvidenceSealed. */
export const SEALED = {
  sealed: 'Sealed',
  signingKeyUnavailable: 'SigningKeyUnavailable',
  /** Status Unknown: a collection Job's credentials can still write under the case; sealed once they expire. */
  waitingForCredentials: 'WaitingForCredentialExpiry',
  /** Status Unknown: a volume snapshot is not ready yet; sealed once it is, or at the collection's timeout. */
  waitingForSnapshots: 'WaitingForVolumeSnapshots',
  /** The seal found a manifest it did not write (or cannot prove it wrote): see EvidenceTampered. */
  tampered: 'EvidenceTampered',
} as const;

/** Reasons of EvidenceTampered (status True). */
export const TAMPERED = {
  /** A manifest is in the store that does not verify with the operator's key. */
  foreignManifest: 'ForeignManifest',
  /** A manifest signed with the operator's key that names another case or location. */
  misboundManifest: 'MisboundManifest',
  /** A manifest that cannot be parsed at all. */
  unreadableManifest: 'UnreadableManifest',
} as const;

export function collectionState(conditions: readonly Condition[] | undefined): CollectionState {
  const get = (type: string) => conditions?.find((c) => c.type === type);
  const tampered = get('EvidenceTampered');
  if (tampered?.status === 'True') return { kind: 'tampered', reason: tampered.reason };
  const collected = get('EvidenceCollected');
  const sealed = get('EvidenceSealed');
  if (!collected) return { kind: 'idle' };
  const complete = collected.status === 'True';
  if (sealed?.status === 'True') return { kind: 'sealed', complete };
  if (collected.status === 'True' || collected.reason === COLLECTED.incomplete) {
    if (sealed?.status === 'False') return { kind: 'sealPending', complete, reason: sealed.reason };
    return { kind: 'collected', complete };
  }
  if (collected.reason === COLLECTED.inProgress) return { kind: 'collecting' };
  return { kind: 'failed', reason: collected.reason };
}
