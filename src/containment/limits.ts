/**
 * The blast-radius limit on nodes, decided from the cluster's own state (ADR 0010): the node a
 * case would hold is its pod's spec.nodeName, counted against the nodes Amber holds cluster-wide
 * (the holder annotations), never against what an alert says. Pure; tested with tables.
 */

export interface NodeLimit {
  /** Where the limit comes from, for the message: "operator configuration", "policy web". */
  source: string;
  maxNodes: number;
  /** Percentage of the cluster's nodes; above 0 it always allows at least one node. */
  maxPercent: number;
}

/** The operator's defaults when its configuration sets none (as the intake's were). */
export const DEFAULT_NODE_LIMIT = { maxNodes: 3, maxPercent: 20 } as const;

/** The cluster as a node decision sees it, read under the decision lock. */
export interface NodeSlots {
  /**
   * Nodes that some case holds, cluster-wide: the nodes whose holder annotation names a case,
   * and the nodes that open cases say they hold (root on a held node can strip its Node's
   * label and annotation, which must not free a slot).
   */
  heldNodes: readonly string[];
  clusterNodes: number;
  limits: readonly NodeLimit[];
}

/** The parts of a ForensicCase a hold count reads; anything else in the object is ignored. */
export interface CaseHold {
  status?: {
    node?: string;
    conditions?: readonly { type?: string; status?: string }[];
  };
}

/**
 * Nodes that cases not yet released say they hold (NodeHeld=True with a node). A case that is
 * releasing still counts until Released is True: its node may still be cordoned.
 */
export function nodesHeldByCases(cases: readonly CaseHold[]): string[] {
  const held = new Set<string>();
  for (const c of cases) {
    const conditions = c.status?.conditions ?? [];
    const is = (type: string) => conditions.some((x) => x.type === type && x.status === 'True');
    const node = c.status?.node;
    if (typeof node === 'string' && node && is('NodeHeld') && !is('Released')) held.add(node);
  }
  return [...held];
}

export function nodesAllowedByPercent(percent: number, clusterNodes: number): number {
  if (percent <= 0) return 0;
  return Math.max(1, Math.floor((clusterNodes * percent) / 100));
}

export type NodeDecision = { take: true; message: string } | { take: false; message: string };

/** May a case hold `node`? Joining a node Amber already holds costs nothing. */
export function decideNode(node: string, slots: NodeSlots): NodeDecision {
  const held = new Set(slots.heldNodes);
  if (held.has(node)) return { take: true, message: `node ${node} is already held by Amber` };
  let tightest: { allowed: number; source: string } | undefined;
  for (const l of slots.limits) {
    const allowed = Math.min(l.maxNodes, nodesAllowedByPercent(l.maxPercent, slots.clusterNodes));
    if (!tightest || allowed < tightest.allowed) tightest = { allowed, source: l.source };
  }
  if (tightest && held.size + 1 > tightest.allowed)
    return {
      take: false,
      message: `node limit reached: Amber holds ${held.size} of ${slots.clusterNodes} nodes and ${tightest.source} allows ${tightest.allowed}; node ${node} is not cordoned, tainted or labelled`,
    };
  return {
    take: true,
    message: `node ${node} is the ${ordinal(held.size + 1)} node Amber holds (of ${slots.clusterNodes})`,
  };
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${s}`;
}
