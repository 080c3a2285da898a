/** Labels, annotations and taints Amber puts on the objects it contains. */
export const CASE_LABEL = 'forensics.amber.io/case';
export const QUARANTINE_LABEL = 'forensics.amber.io/quarantined';
/**
 * On a pod whose network is isolated, naming its case: the namespace's standing quarantine
 * NetworkPolicy selects every pod that has this key, so isolating a pod is one label write
 * (ADR 0025). Apart from QUARANTINE_LABEL because a case may quarantine without isolating.
 */
export const NETWORK_QUARANTINE_LABEL = 'forensics.amber.io/network-quarantine';
/** The standing deny-all NetworkPolicy of a namespace (one per namespace, never per case). */
export const STANDING_POLICY_NAME = 'amber-quarantine';
export const ORIGINAL_LABELS_ANNOTATION = 'forensics.amber.io/original-labels';
export const NODE_HOLDERS_ANNOTATION = 'forensics.amber.io/holding-cases';
/**
 * On every node some case holds (with the holders annotation): the API server can then list
 * exactly the nodes Amber holds, which the node limit counts and a release lets go of.
 */
export const NODE_HELD_LABEL = 'forensics.amber.io/held';
/** On the quarantine NetworkPolicy: the UID of the pod the case pinned (see ADR 0010). */
export const POD_UID_ANNOTATION = 'forensics.amber.io/pod-uid';
/** Set when Amber cordoned a node an administrator had not already cordoned. */
export const NODE_CORDONED_BY_AMBER_ANNOTATION = 'forensics.amber.io/cordoned-by-amber';
export const QUARANTINE_TAINT_KEY = 'forensics.amber.io/quarantine';
export const FINALIZER = 'forensics.amber.io/release';
export const FIELD_MANAGER = 'amber-operator';

/**
 * The per-case quarantine policy of Amber before ADR 0025: no longer created, but a case
 * contained by an earlier version has one (it carries the pin, and goes on release).
 */
export function networkPolicyName(caseName: string): string {
  // NetworkPolicy names are DNS subdomains (<= 253); case names already are.
  return `amber-quarantine-${caseName}`.slice(0, 253);
}
