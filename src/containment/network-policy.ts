import type { V1NetworkPolicy } from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { API_VERSION } from '../api/common.js';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  POD_UID_ANNOTATION,
  STANDING_POLICY_NAME,
  networkPolicyName,
} from './labels.js';

export interface CaseRef {
  name: string;
  uid: string;
}

export const MANAGED_BY_LABEL = { 'app.kubernetes.io/managed-by': 'amber' } as const;

/** Marks the standing policy among Amber's policies (the per-case ones carry CASE_LABEL). */
export const STANDING_LABEL = { 'forensics.amber.io/standing-quarantine': 'true' } as const;

/**
 * The namespace's standing quarantine policy: deny-all ingress and egress for every pod that
 * carries NETWORK_QUARANTINE_LABEL, whatever its value (a changed value does not let a pod out).
 * Created once per namespace and left in place: without the label it selects nothing, so
 * isolating a pod is one label write on that pod alone (ADR 0025). Owned by no case: it outlives
 * them all.
 */
export function standingQuarantinePolicy(namespace: string): V1NetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: STANDING_POLICY_NAME,
      namespace,
      labels: { ...MANAGED_BY_LABEL, ...STANDING_LABEL },
    },
    spec: {
      podSelector: { matchExpressions: [{ key: NETWORK_QUARANTINE_LABEL, operator: 'Exists' }] },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress: [],
    },
  };
}

export const isStandingPolicy = (p: { metadata?: { name?: string; labels?: Record<string, string> } }) =>
  p.metadata?.name === STANDING_POLICY_NAME &&
  p.metadata.labels?.['forensics.amber.io/standing-quarantine'] === 'true';

/**
 * A deny-all ingress and egress policy that selects the suspect pod alone, through the
 * quarantine label carrying the case's name (no other pod has it). Owned by the case, so
 * it is collected with it; Amber also deletes it explicitly on release. It carries the UID of
 * the pod the case pinned: created before anything else is written, it keeps the pin across a
 * crash that comes before the case's status is written.
 */
export function quarantinePolicy(kase: CaseRef, namespace: string, podUID: string): V1NetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: networkPolicyName(kase.name),
      namespace,
      labels: { [CASE_LABEL]: kase.name, ...MANAGED_BY_LABEL },
      annotations: { [POD_UID_ANNOTATION]: podUID },
      ownerReferences: [ownerReference(kase)],
    },
    spec: {
      podSelector: { matchLabels: { [CASE_LABEL]: kase.name } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress: [],
    },
  };
}

export function ownerReference(kase: CaseRef) {
  return {
    apiVersion: API_VERSION,
    kind: 'ForensicCase',
    name: kase.name,
    uid: kase.uid,
    controller: true,
    blockOwnerDeletion: false,
  };
}

/**
 * How an existing quarantine policy differs from the wanted one ('missing', 'edited'), or
 * undefined when it is in place. Only what Amber sets is compared: labels and annotations
 * others add are left alone, and the API server's dropping of empty rule lists is no edit.
 */
export function policyDrift(
  current: V1NetworkPolicy | undefined,
  wanted: V1NetworkPolicy,
): 'missing' | 'edited' | undefined {
  if (!current) return 'missing';
  const has = (have: Record<string, string> | undefined, want: Record<string, string> | undefined) =>
    Object.entries(want ?? {}).every(([k, v]) => have?.[k] === v);
  const spec = (p: V1NetworkPolicy) => ({
    podSelector: {
      matchLabels: p.spec?.podSelector?.matchLabels ?? {},
      matchExpressions: (p.spec?.podSelector?.matchExpressions ?? []).map((e) => ({
        key: e.key,
        operator: e.operator,
        values: e.values ?? [],
      })),
    },
    policyTypes: [...(p.spec?.policyTypes ?? [])].sort(),
    ingress: p.spec?.ingress ?? [],
    egress: p.spec?.egress ?? [],
  });
  const owner = wanted.metadata?.ownerReferences?.[0];
  // A per-case policy must still be its case's. The standing policy has no owner: one added by
  // someone else would let the garbage collector delete it.
  const owned = owner
    ? current.metadata?.ownerReferences?.some((o) => o.uid === owner.uid && o.controller)
    : !current.metadata?.ownerReferences?.length;
  const inPlace =
    isDeepStrictEqual(spec(current), spec(wanted)) &&
    has(current.metadata?.labels, wanted.metadata?.labels) &&
    has(current.metadata?.annotations, wanted.metadata?.annotations) &&
    owned;
  return inPlace ? undefined : 'edited';
}

/** The wanted policy as a full object for an update (PUT) over `current`. */
export function policyReplacement(current: V1NetworkPolicy, wanted: V1NetworkPolicy): V1NetworkPolicy {
  return {
    ...wanted,
    metadata: {
      ...wanted.metadata,
      resourceVersion: current.metadata?.resourceVersion,
      labels: { ...current.metadata?.labels, ...wanted.metadata?.labels },
      annotations: { ...current.metadata?.annotations, ...wanted.metadata?.annotations },
    },
  };
}

/** The pod UID a policy records, if the policy is this case's own (owner reference by UID). */
export function pinnedByPolicy(
  policy: V1NetworkPolicy | undefined,
  caseUID: string | undefined,
): string | undefined {
  if (!policy || !caseUID) return undefined;
  if (!policy.metadata?.ownerReferences?.some((o) => o.uid === caseUID)) return undefined;
  return policy.metadata?.annotations?.[POD_UID_ANNOTATION] || undefined;
}
