import type { KubernetesObject, RbacAuthorizationV1Api, V1Pod, RbacV1Subject } from '@kubernetes/client-node';
import YAML from 'yaml';
import { artifactSegment } from '../collector/logs.js';
import { ArtifactExistsError, type EvidenceStore, type StoredArtifact } from '../evidence/store.js';
import type { KubeClients } from '../cases/client.js';
import { ORIGINAL_LABELS_ANNOTATION } from '../containment/labels.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage, isNotFound } from '../runtime/errors.js';
import type { Gap } from './decide.js';

export const ORCHESTRATOR_PREFIX = 'orchestrator';

export interface OrchestratorInput {
  caseId: string;
  namespace: string;
  podName: string;
  /** The pod as read at collection time; undefined when it is gone. */
  pod: V1Pod | undefined;
  /** The node recorded at containment, for when the pod is gone. */
  node: string | undefined;
  store: EvidenceStore;
  clients: KubeClients;
  rbac: RbacAuthorizationV1Api;
  log: Logger;
  /** Largest log read through the API, per container instance. */
  maxLogBytes: number;
  timeoutMs: number;
  /** The Falco alert that opened the case and those attached since (bounded in the case's status). */
  alerts?: { triggering?: unknown; received?: unknown };
}

export interface OrchestratorResult {
  artifacts: StoredArtifact[];
  gaps: Gap[];
  skipped: Gap[];
}

/**
 * The orchestrator's view of the suspect pod, each piece an artifact under `orchestrator/`: the
 * pod, its events, its logs (current and previous instance), its ServiceAccount and the RBAC
 * bound to it, its node and owning workload. Each piece is read on its own: a failure is a gap
 * in orchestrator/report.json, never the end of the collection. Nothing is overwritten: a piece
 * a previous pass stored already is kept as it is.
 */
export async function collectOrchestratorView(input: OrchestratorInput): Promise<OrchestratorResult> {
  const { clients, namespace, podName, pod, store, caseId } = input;
  const stored: StoredArtifact[] = [];
  const existing: string[] = [];
  const gaps: Gap[] = [];
  const skipped: Gap[] = [];
  const collectedAt = new Date().toISOString();

  const put = async (name: string, body: string, contentType: string, collectedBy: string) => {
    const full = `${ORCHESTRATOR_PREFIX}/${name}`;
    try {
      stored.push(
        await store.put(caseId, full, body, {
          contentType,
          collectedBy: `operator/${collectedBy}`,
          collectedAt,
          ...(input.node && { node: input.node }),
        }),
      );
    } catch (err) {
      if (err instanceof ArtifactExistsError) existing.push(full);
      else gaps.push({ what: full, reason: `not stored: ${errorMessage(err)}` });
    }
  };
  const yaml = (v: unknown) => YAML.stringify(v, { aliasDuplicateObjects: false });
  /** Reads one piece; a failure or timeout is a gap and the rest goes on. */
  const read = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${input.timeoutMs} ms`)), input.timeoutMs);
        }),
      ]);
    } catch (err) {
      gaps.push({ what, reason: errorMessage(err) });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };

  if (pod) await put('pod.yaml', yaml(withKind(pod, 'v1', 'Pod')), 'application/yaml', 'pod');
  else gaps.push({ what: 'pod', reason: `pod ${namespace}/${podName} no longer exists` });

  const events = await read('events', () =>
    clients.core.listNamespacedEvent({
      namespace,
      fieldSelector: pod?.metadata?.uid
        ? `involvedObject.uid=${pod.metadata.uid}`
        : `involvedObject.name=${podName}`,
    }),
  );
  if (events) await put('events.yaml', yaml(events.items), 'application/yaml', 'events');

  for (const c of [...(pod?.spec?.initContainers ?? []), ...(pod?.spec?.containers ?? [])]) {
    const status = [
      ...(pod?.status?.initContainerStatuses ?? []),
      ...(pod?.status?.containerStatuses ?? []),
    ].find((s) => s.name === c.name);
    const instances: [string, boolean][] = [['current', false]];
    if ((status?.restartCount ?? 0) > 0) instances.push(['previous', true]);
    else skipped.push({ what: `logs of ${c.name} (previous)`, reason: 'the container never restarted' });
    for (const [which, previous] of instances) {
      const text = await read(`logs of ${c.name} (${which})`, () =>
        clients.core.readNamespacedPodLog({
          namespace,
          name: podName,
          container: c.name,
          previous,
          timestamps: true,
          limitBytes: input.maxLogBytes,
        }),
      );
      if (text !== undefined)
        await put(`logs/${artifactSegment(c.name)}.${which}.log`, text, 'text/plain', 'logs');
    }
  }

  const saName = pod?.spec?.serviceAccountName ?? (pod ? 'default' : undefined);
  if (saName) {
    const sa = await read(`serviceaccount ${saName}`, () =>
      clients.core.readNamespacedServiceAccount({ namespace, name: saName }),
    );
    if (sa)
      await put(
        'serviceaccount.yaml',
        yaml(withKind(sa, 'v1', 'ServiceAccount')),
        'application/yaml',
        'serviceaccount',
      );
    const rbac = await read('rbac', () => boundRbac(input.rbac, namespace, saName));
    if (rbac) {
      gaps.push(...rbac.gaps);
      await put('rbac.yaml', rbac.objects.map(yaml).join('---\n'), 'application/yaml', 'rbac');
    }
  }

  if (input.node) {
    const node = input.node;
    const n = await read(`node ${node}`, () => clients.core.readNode({ name: node }));
    if (n) await put('node.yaml', yaml(withKind(n, 'v1', 'Node')), 'application/yaml', 'node');
  }

  if (pod) {
    const owners = await read('owner', () => ownerChain(clients, pod));
    if (owners?.length) await put('owner.yaml', owners.map(yaml).join('---\n'), 'application/yaml', 'owner');
    else if (owners) skipped.push({ what: 'owner', reason: 'the pod has no owning workload' });
  }

  // The alerts are evidence too: what Falco saw, as the case recorded it up to this moment.
  if (input.alerts?.triggering || input.alerts?.received) {
    await put('alerts.json', `${JSON.stringify(input.alerts, null, 2)}\n`, 'application/json', 'alerts');
  }

  await put(
    'report.json',
    `${JSON.stringify({ caseId, pod: `${namespace}/${podName}`, collectedAt, stored: [...stored.map((a) => a.name), ...existing], gaps, skipped }, null, 2)}\n`,
    'application/json',
    'report',
  );
  if (existing.length > 0) {
    // Stored by a pass that crashed before recording it: the store tells the digests.
    const names = new Set(existing);
    stored.push(...(await store.list(caseId)).filter((a) => names.has(a.name)));
  }
  input.log.info({ stored: stored.length, gaps: gaps.length }, 'orchestrator view collected');
  return { artifacts: stored, gaps, skipped };
}

function withKind<T extends KubernetesObject>(obj: T, apiVersion: string, kind: string): T {
  return { ...obj, apiVersion: obj.apiVersion ?? apiVersion, kind: obj.kind ?? kind };
}

/** The RoleBindings and ClusterRoleBindings that grant the ServiceAccount anything, and their roles. */
async function boundRbac(
  rbac: RbacAuthorizationV1Api,
  namespace: string,
  sa: string,
): Promise<{ objects: KubernetesObject[]; gaps: Gap[] }> {
  const groups = new Set([
    'system:serviceaccounts',
    `system:serviceaccounts:${namespace}`,
    'system:authenticated',
  ]);
  const matches = (s: RbacV1Subject) =>
    (s.kind === 'ServiceAccount' && s.name === sa && (s.namespace ?? namespace) === namespace) ||
    (s.kind === 'Group' && groups.has(s.name));
  const [rbs, crbs] = await Promise.all([
    rbac.listNamespacedRoleBinding({ namespace }),
    rbac.listClusterRoleBinding(),
  ]);
  const objects: KubernetesObject[] = [];
  const gaps: Gap[] = [];
  const role = async (kind: string, name: string, ns: string | undefined) => {
    try {
      const r =
        kind === 'Role' && ns
          ? await rbac.readNamespacedRole({ namespace: ns, name })
          : await rbac.readClusterRole({ name });
      objects.push(withKind(r, 'rbac.authorization.k8s.io/v1', kind));
    } catch (err) {
      gaps.push({
        what: `${kind} ${name}`,
        reason: isNotFound(err) ? 'bound but does not exist' : errorMessage(err),
      });
    }
  };
  for (const b of rbs.items.filter((b) => b.subjects?.some(matches))) {
    objects.push(withKind(b, 'rbac.authorization.k8s.io/v1', 'RoleBinding'));
    await role(b.roleRef.kind, b.roleRef.name, namespace);
  }
  for (const b of crbs.items.filter((b) => b.subjects?.some(matches))) {
    objects.push(withKind(b, 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding'));
    await role('ClusterRole', b.roleRef.name, undefined);
  }
  return { objects, gaps };
}

/**
 * The workload that owns the pod and the one above it (ReplicaSet -> Deployment, Job ->
 * CronJob). Containment detaches the pod, and the controller then drops its ownerReference; the
 * ReplicaSet named by the pod's generateName is checked against the labels containment removed.
 */
async function ownerChain(clients: KubeClients, pod: V1Pod): Promise<KubernetesObject[]> {
  const namespace = pod.metadata!.namespace!;
  const read = async (kind: string, name: string): Promise<KubernetesObject | undefined> => {
    const get: Record<string, () => Promise<KubernetesObject>> = {
      ReplicaSet: () => clients.apps.readNamespacedReplicaSet({ namespace, name }),
      Deployment: () => clients.apps.readNamespacedDeployment({ namespace, name }),
      StatefulSet: () => clients.apps.readNamespacedStatefulSet({ namespace, name }),
      DaemonSet: () => clients.apps.readNamespacedDaemonSet({ namespace, name }),
      Job: () => clients.batch.readNamespacedJob({ namespace, name }),
      CronJob: () => clients.batch.readNamespacedCronJob({ namespace, name }),
    };
    const fn = get[kind];
    if (!fn) return undefined;
    try {
      return withKind(await fn(), kind === 'Job' || kind === 'CronJob' ? 'batch/v1' : 'apps/v1', kind);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };
  let owner: KubernetesObject | undefined;
  const ref = pod.metadata?.ownerReferences?.find((o) => o.controller);
  if (ref) owner = await read(ref.kind, ref.name);
  else owner = await formerReplicaSet(pod, (name) => read('ReplicaSet', name));
  if (!owner) return [];
  const up = owner.metadata?.ownerReferences?.find((o) => o.controller);
  const top = up ? await read(up.kind, up.name) : undefined;
  return top ? [owner, top] : [owner];
}

async function formerReplicaSet(pod: V1Pod, read: (name: string) => Promise<KubernetesObject | undefined>) {
  const generateName = pod.metadata?.generateName;
  const removed = pod.metadata?.annotations?.[ORIGINAL_LABELS_ANNOTATION];
  if (!generateName || !removed) return undefined;
  const rs = (await read(generateName.replace(/-$/, ''))) as
    (KubernetesObject & { spec?: { selector?: { matchLabels?: Record<string, string> } } }) | undefined;
  const original = { ...pod.metadata?.labels, ...(JSON.parse(removed) as Record<string, string>) };
  const selector = rs?.spec?.selector?.matchLabels ?? {};
  const matches =
    Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => original[k] === v);
  return matches ? rs : undefined;
}
