import { z } from 'zod';
import { MANIFEST_NAME, type CustodyStep, type Note } from '../evidence/manifest.js';
import type { StoreProblem, StoredArtifact } from '../evidence/store.js';
import { containerPrefix } from './decide.js';
import { ORCHESTRATOR_PREFIX } from './orchestrator.js';

/**
 * What the seal signs (ADR 0009). The store's listing is not trusted: anyone who could write
 * under the case (a leaked credential, root on a node during its Job) could have added objects.
 * So the seal signs only what a collector of this case accounts for, each in its own place:
 * a container's collector for names under its own prefix that its report lists, the operator
 * for the orchestrator's view it stored itself. Everything else is a finding, named in the
 * manifest and the status, never signed as evidence. Pure: tested with tables.
 */

/** The collector's report.json, as far as the seal reads it. */
export const ContainerReport = z.looseObject({
  containerId: z.string().optional(),
  node: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  collected: z.array(z.looseObject({ artifact: z.string() })),
  failed: z.array(z.object({ what: z.string(), reason: z.string() })),
});
export type ContainerReport = z.infer<typeof ContainerReport>;

/** orchestrator/report.json, written by the operator itself. */
export const OrchestratorReport = z.looseObject({
  collectedAt: z.string().optional(),
  stored: z.array(z.string()),
  gaps: z.array(z.object({ what: z.string(), reason: z.string() })).default([]),
});
export type OrchestratorReport = z.infer<typeof OrchestratorReport>;

/** A container the case wanted, with the ID the pod's status gave it. */
export interface WantedContainer {
  name: string;
  id: string;
}

export interface SealAccountingInput {
  /** Every object the store lists under the case. */
  listing: StoredArtifact[];
  /**
   * What the store found wrong under the case (bad keys, corrupt records, keys written twice):
   * each a finding; an artifact it taints is never signed.
   */
  problems?: StoreProblem[];
  wanted: WantedContainer[];
  /** The reports found, by container prefix: parsed, or why not. */
  reports: Map<string, ContainerReport | { unreadable: string }>;
  /** undefined: the case did not ask for the orchestrator's view. */
  orchestrator?: OrchestratorReport | { unreadable: string } | 'absent';
  /** Gaps the collection recorded (containers that could not be reached, with why). */
  knownGaps: Note[];
}

export interface SealAccounting {
  sealed: StoredArtifact[];
  findings: Note[];
  /** What makes the collection incomplete: a container or the orchestrator's view not collected, an artifact reported and absent. */
  gaps: Note[];
  /**
   * Items inside a collected container or view that could not be read (a FIFO the suspect
   * holds, a log no kubelet served): listed in the manifest, but the part they belong to was
   * collected, so they do not make the collection incomplete.
   */
  unreadable: Note[];
  complete: boolean;
  /** Containers whose collector left a report that says it found the container. */
  collectedContainers: number;
}

export function reportName(prefix: string): string {
  return `${prefix}/report.json`;
}

export function accountForCase(input: SealAccountingInput): SealAccounting {
  const problems = input.problems ?? [];
  const tainted = new Set(problems.flatMap((p) => (p.taints ? [p.taints] : [])));
  const byName = new Map(input.listing.map((a) => [a.name, a]));
  const accounted = new Set<string>();
  const gaps: Note[] = [];
  const unreadable: Note[] = [];
  let collectedContainers = 0;

  const known = new Map(input.knownGaps.map((g) => [g.what, g.reason]));
  for (const c of input.wanted) {
    const prefix = containerPrefix(c.id);
    const report = input.reports.get(prefix);
    const what = `container ${c.name}`;
    if (!report) {
      gaps.push({
        what,
        reason: known.get(what) ?? `no ${reportName(prefix)}: its collector did not finish`,
      });
      continue;
    }
    accounted.add(reportName(prefix));
    if ('unreadable' in report) {
      gaps.push({ what, reason: `${reportName(prefix)} is not a collector report: ${report.unreadable}` });
      continue;
    }
    const fatal = report.failed.find((f) => f.what === 'container');
    if (fatal) gaps.push({ what, reason: `collector: ${fatal.reason}` });
    else collectedContainers++;
    for (const f of report.failed)
      if (f !== fatal) unreadable.push({ what: `${c.name}: ${f.what}`, reason: f.reason });
    for (const { artifact } of report.collected) {
      // A collector speaks for its own prefix only.
      if (!artifact.startsWith(`${prefix}/`)) continue;
      if (tainted.has(artifact))
        gaps.push({
          what: artifact,
          reason: 'touched after its collector stored it: not signed (see findings)',
        });
      else if (byName.has(artifact)) accounted.add(artifact);
      else gaps.push({ what: artifact, reason: 'listed in the collector report but absent from the store' });
    }
  }
  // Containers the case wanted but could not reach at all (not running, pod gone, ...).
  for (const g of input.knownGaps)
    if (!gaps.some((x) => x.what === g.what) && !input.wanted.some((c) => `container ${c.name}` === g.what))
      gaps.push(g);

  const orch = input.orchestrator;
  if (orch !== undefined) {
    const report = `${ORCHESTRATOR_PREFIX}/report.json`;
    if (orch === 'absent') gaps.push({ what: 'orchestrator view', reason: `no ${report}` });
    else if ('unreadable' in orch) {
      accounted.add(report);
      gaps.push({ what: 'orchestrator view', reason: `${report} is unreadable: ${orch.unreadable}` });
    } else {
      accounted.add(report);
      for (const name of orch.stored) {
        if (!name.startsWith(`${ORCHESTRATOR_PREFIX}/`)) continue;
        if (byName.has(name)) accounted.add(name);
        else gaps.push({ what: name, reason: 'listed in the orchestrator report but absent from the store' });
      }
      unreadable.push(...orch.gaps.map((g) => ({ what: `orchestrator: ${g.what}`, reason: g.reason })));
    }
  }

  if (collectedContainers === 0 && !gaps.some((g) => g.what.startsWith('container ')))
    gaps.push({ what: 'containers', reason: 'no container of the pod was collected' });

  const sealed: StoredArtifact[] = [];
  const findings: Note[] = problems.map((p) => ({ what: p.what, reason: p.reason }));
  for (const a of input.listing) {
    if (a.name === MANIFEST_NAME) continue;
    if (tainted.has(a.name)) {
      // Named by its own key too, so verify finds it among the findings (the problem may name its record).
      if (!findings.some((f) => f.what === a.name))
        findings.push({
          what: a.name,
          reason: 'its digest record was touched after it was stored: not signed',
        });
      continue;
    }
    if (accounted.has(a.name)) sealed.push(a);
    else findings.push({ what: a.name, reason: unaccountedReason(a.name, input.wanted) });
  }
  return { sealed, findings, gaps, unreadable, complete: gaps.length === 0, collectedContainers };
}

function unaccountedReason(name: string, wanted: WantedContainer[]): string {
  const owner = wanted.find((c) => name.startsWith(`${containerPrefix(c.id)}/`));
  if (owner) return `under container ${owner.name}'s prefix but not in its collector's report: not signed`;
  if (name.startsWith(`${ORCHESTRATOR_PREFIX}/`))
    return 'under the orchestrator prefix but not stored by the operator: not signed';
  return 'written by nothing this case ran: not signed';
}

/**
 * The chain of custody (NIST SP 800-61 evidence log): each handling step with its actor, tool
 * and time. Containment and every later action of the operator come from the case's timeline;
 * each container's collection is the node's step, timed by its report.
 */
export function custodySteps(input: {
  operator: string;
  version: string;
  collectorImage?: string;
  /** Inline mode: the operator process ran the collector itself, on its own node. */
  inline?: boolean;
  timeline: { time: string; action: string; outcome?: string; message?: string }[];
  reports: { container: string; node?: string; report: ContainerReport }[];
  sealedAt: string;
}): CustodyStep[] {
  const operatorActor = { kind: 'operator' as const, name: input.operator };
  const operatorTool = { name: 'amber operator', version: input.version };
  const steps: CustodyStep[] = input.timeline.map((e) => ({
    step: e.action,
    actor: operatorActor,
    tool: operatorTool,
    finishedAt: e.time,
    ...(e.outcome || e.message
      ? { detail: [e.outcome, e.message].filter(Boolean).join(': ').slice(0, 1024) }
      : {}),
  }));
  for (const r of input.reports) {
    const node = r.report.node ?? r.node ?? 'unknown';
    steps.push({
      step: `collect container ${r.container}`,
      actor: input.inline ? operatorActor : { kind: 'node', name: `node/${node}` },
      tool: {
        name: 'amber collect',
        version: input.collectorImage ? `${input.version} (image ${input.collectorImage})` : input.version,
      },
      ...(r.report.startedAt && { startedAt: r.report.startedAt }),
      finishedAt: r.report.finishedAt ?? r.report.startedAt ?? input.sealedAt,
      detail: `${r.report.collected.length} artifacts, ${r.report.failed.length} unreadable items`,
    });
  }
  steps.push({ step: 'seal', actor: operatorActor, tool: operatorTool, finishedAt: input.sealedAt });
  return steps.sort((a, b) => Date.parse(a.finishedAt) - Date.parse(b.finishedAt));
}
