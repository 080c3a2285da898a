import type { V1NetworkPolicy } from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { API_VERSION } from '../api/common.js';
import { CASE_LABEL, POD_UID_ANNOTATION, networkPolicyName } from './labels.js';

export interface CaseRef {
  name: string;
  uid: string;
}

export const MANAGED_BY_LABEL = { 'app.kubernetes.io/managed-by': 'amber' } as const;

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
      matchExpressions: p.spec?.podSelector?.matchExpressions ?? [],
    },
    policyTypes: [...(p.spec?.policyTypes ?? [])].sort(),
    ingress: p.spec?.ingress ?? [],
    egress: p.spec?.egress ?? [],
  });
  const owner = wanted.metadata?.ownerReferences?.[0];
  const owned = current.metadata?.ownerReferences?.some((o) => o.uid === owner?.uid && o.controller);
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
