import type { V1NetworkPolicy } from '@kubernetes/client-node';
import { API_VERSION } from '../api/common.js';
import { CASE_LABEL, networkPolicyName } from './labels.js';

export interface CaseRef {
  name: string;
  uid: string;
}

/**
 * A deny-all ingress and egress policy that selects the suspect pod alone, through the
 * quarantine label carrying the case's name (no other pod has it). Owned by the case, so
 * it is collected with it; Amber also deletes it explicitly on release.
 */
export function quarantinePolicy(kase: CaseRef, namespace: string): V1NetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: networkPolicyName(kase.name),
      namespace,
      labels: { [CASE_LABEL]: kase.name, 'app.kubernetes.io/managed-by': 'amber' },
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
