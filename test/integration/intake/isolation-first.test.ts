import { CustomObjectsApi, NetworkingV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { RESPONSE_POLICY } from '../../../src/api/responsepolicy.js';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  QUARANTINE_LABEL,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { selectorMatches } from '../../../src/containment/pod.js';
import { caseNameFor } from '../../../src/intake/cases.js';
import { startIntake, type RunningIntake } from '../../../src/intake/index.js';
import { isolateEarly } from '../../../src/intake/isolate.js';
import { kubeCaseApi } from '../../../src/intake/kube.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { freePort } from '../../testenv/ports.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

/**
 * Isolation first (ADR 0025): the intake alone — no case controller runs in this file — isolates
 * the pod an opening alert names, through the namespace's standing policy and one label write,
 * and only that pod as the API server has it.
 */
const TOKEN = 'isolation-first-token-0123456789';
const fixture = readFileSync(
  join(import.meta.dirname, '..', '..', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);
/** The real event, aimed at namespace/pod, with extra output fields the attacker may control. */
const event = (namespace: string, pod: string, extra = '') =>
  fixture
    .replaceAll('"default"', `"${namespace}"`)
    .replaceAll('"alpine"', `"${pod}"`)
    .replace('"output_fields": {', `"output_fields": {${extra}`);

let cluster: Cluster;
let admin: KubeConfig;
let opKc: KubeConfig;
let w: Workloads;
let net: NetworkingV1Api;
let intake: RunningIntake;
let walDir: string;
const registry = createRegistry();

const post = (body: string) => postLikeFalcosidekick(intake.url, body, { Authorization: `Bearer ${TOKEN}` });
const readPod = (namespace: string, name: string) => w.core.readNamespacedPod({ namespace, name });
const outcomes = async (outcome: string) => {
  const m = await registry.getSingleMetricAsString('amber_intake_early_isolations_total');
  const line = m.split('\n').find((l) => l.includes(`outcome="${outcome}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
};

async function createPod(namespace: string, name: string, labels: Record<string, string>): Promise<V1Pod> {
  return w.core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name, labels },
      spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'busybox' }] },
    },
  });
}

beforeAll(async () => {
  cluster = await startCluster();
  admin = cluster.kubeConfig();
  await installCrds(admin);
  w = new Workloads(admin);
  net = admin.makeApiClient(NetworkingV1Api);
  for (const ns of ['shop', 'tenant', 'empty']) await w.namespace(ns);
  await admin.makeApiClient(CustomObjectsApi).createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RESPONSE_POLICY.plural,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: RESPONSE_POLICY.kind,
      metadata: { name: 'shells' },
      spec: {
        match: { minimumPriority: 'Notice' },
        limits: { maxOpenCases: 100 },
        collection: { enabled: false },
      },
    },
  });
  opKc = await operatorKubeConfig(cluster);
  walDir = mkdtempSync(join(tmpdir(), 'amber-isolation-first-'));
  // As the operator's ServiceAccount: deploy/rbac.yaml must grant what early isolation uses.
  intake = await startIntake({
    kubeConfig: opKc,
    registry,
    logger: silentLogger,
    token: TOKEN,
    port: await freePort(),
    host: '127.0.0.1',
    limits: { maxOpenCases: 100, protectedNamespaces: [OPERATOR_NAMESPACE, 'kube-system'] },
    wal: { baseDir: walDir, name: 'test', maxBytes: 8 * 1024 * 1024 },
    safety: { operatorNamespace: OPERATOR_NAMESPACE, allowKubeSystem: false, protectedNamespaces: [] },
  });
  await waitFor(
    'policy in force',
    async () => intake.engine.policyNames(),
    (n) => n.includes('shells'),
  );
});

afterAll(async () => {
  await intake?.close();
  await cluster?.stop();
  if (walDir) rmSync(walDir, { recursive: true, force: true });
});

describe('isolation first, by the intake', () => {
  it('an opening alert isolates its pod with one label write under the standing policy, before any case controller', async () => {
    const suspect = await createPod('shop', 'web-1', { app: 'web' });
    const res = await post(event('shop', 'web-1'));
    expect(res.status).toBe(202);
    const name = caseNameFor({ namespace: 'shop', pod: 'web-1' });
    const pod = await waitFor(
      'pod labelled',
      () => readPod('shop', 'web-1'),
      (p) => p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] !== undefined,
    );
    expect(pod.metadata?.uid).toBe(suspect.metadata?.uid);
    expect(pod.metadata?.labels).toEqual({
      app: 'web',
      [CASE_LABEL]: name,
      [QUARANTINE_LABEL]: 'true',
      [NETWORK_QUARANTINE_LABEL]: name,
    });
    const policy = await net.readNamespacedNetworkPolicy({ namespace: 'shop', name: STANDING_POLICY_NAME });
    expect(policy.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec?.ingress ?? []).toEqual([]);
    expect(policy.spec?.egress ?? []).toEqual([]);
    expect(selectorMatches(policy.spec?.podSelector, pod.metadata!.labels!)).toBe(true);
    // The case is written too: the reconciler pins and completes containment from it.
    await waitFor(
      'case written',
      () => w.getCase(name).catch(() => undefined),
      (c) => c !== undefined,
    );
  });

  it('an alert naming an innocent pod’s name in another namespace, and its labels, labels nothing there', async () => {
    // The innocent pod lives in shop; the attacker's alert names the same pod name in tenant,
    // where no such pod exists, and claims the innocent pod's labels in its output fields.
    const innocent = await createPod('shop', 'api-0', { app: 'api', tier: 'backend' });
    const before = await outcomes('pod-not-found');
    const res = await post(
      event('tenant', 'api-0', '"k8s.pod.labels":"app:api, tier:backend","k8s.pod.label.app":"api",'),
    );
    expect(res.status).toBe(202);
    await waitFor(
      'the intake decided',
      () => outcomes('pod-not-found'),
      (n) => n > before,
    );
    const after = await readPod('shop', 'api-0');
    expect(after.metadata?.labels).toEqual({ app: 'api', tier: 'backend' });
    expect(after.metadata?.resourceVersion).toBe(innocent.metadata?.resourceVersion);
    // No pod labelled in tenant, so nothing written there at all.
    expect((await net.listNamespacedNetworkPolicy({ namespace: 'tenant' })).items).toEqual([]);
    // And the shop policy selects only pods with the label, which the innocent pod does not have.
    const shop = await net.readNamespacedNetworkPolicy({ namespace: 'shop', name: STANDING_POLICY_NAME });
    expect(selectorMatches(shop.spec?.podSelector, after.metadata!.labels!)).toBe(false);
  });

  it('when both namespaces have a pod of that name, only the named namespace’s pod is labelled', async () => {
    await createPod('empty', 'twin', { app: 'twin' });
    const innocent = await createPod('shop', 'twin', { app: 'twin' });
    expect((await post(event('empty', 'twin'))).status).toBe(202);
    await waitFor(
      'pod labelled',
      () => readPod('empty', 'twin'),
      (p) =>
        p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] === caseNameFor({ namespace: 'empty', pod: 'twin' }),
    );
    const after = await readPod('shop', 'twin');
    expect(after.metadata?.labels).toEqual({ app: 'twin' });
    expect(after.metadata?.resourceVersion).toBe(innocent.metadata?.resourceVersion);
  });

  it('a pod carrying another case’s label (its own doing) is left to the reconciler, not relabelled', async () => {
    await createPod('shop', 'sly', { app: 'sly', [CASE_LABEL]: 'someone-else' });
    const before = await outcomes('labelled-for-another-case');
    expect((await post(event('shop', 'sly'))).status).toBe(202);
    await waitFor(
      'the intake decided',
      () => outcomes('labelled-for-another-case'),
      (n) => n > before,
    );
    const p = await readPod('shop', 'sly');
    expect(p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBeUndefined();
    expect(p.metadata?.labels?.[CASE_LABEL]).toBe('someone-else');
  });

  it('the label write lands on the pod that was read or not at all (UID and resourceVersion preconditions)', async () => {
    const api = kubeCaseApi(opKc);
    await createPod('shop', 'stateful-0', { app: 'db' });
    const read = await api.readPod('shop', 'stateful-0');
    const decision = isolateEarly(read, 'c-db');
    expect(decision.action).toBe('label');
    // A same-name replacement between the read and the write (a StatefulSet's next pod).
    await w.core.deleteNamespacedPod({ namespace: 'shop', name: 'stateful-0', gracePeriodSeconds: 0 });
    await waitFor(
      'pod gone',
      () => api.readPod('shop', 'stateful-0'),
      (p) => p === undefined,
    );
    const replacement = await createPod('shop', 'stateful-0', { app: 'db' });
    const err = await api
      .patchPod('shop', 'stateful-0', (decision as { patch: object }).patch)
      .catch((e: { code?: number }) => e);
    expect((err as { code?: number }).code).toBe(409);
    // The UID alone is a precondition too, whatever the resourceVersion.
    const uidOnly = await api
      .patchPod('shop', 'stateful-0', { metadata: { uid: read!.metadata!.uid, labels: { x: 'y' } } })
      .catch((e: { code?: number }) => e);
    expect([409, 422]).toContain((uidOnly as { code?: number }).code);
    const after = await readPod('shop', 'stateful-0');
    expect(after.metadata?.uid).toBe(replacement.metadata?.uid);
    expect(after.metadata?.labels).toEqual({ app: 'db' });
  });
});
