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
  /** Nodes that some case holds (holder annotation not empty), cluster-wide. */
  heldNodes: readonly string[];
  clusterNodes: number;
  limits: readonly NodeLimit[];
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
