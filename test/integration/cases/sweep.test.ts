import { CustomObjectsApi, NetworkingV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { RESPONSE_POLICY } from '../../../src/api/responsepolicy.js';
import { KubeClients } from '../../../src/cases/client.js';
import { QuarantineSweeper } from '../../../src/cases/sweeper.js';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  QUARANTINE_LABEL,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { selectorMatches } from '../../../src/containment/pod.js';
import { caseNameFor } from '../../../src/intake/cases.js';
import { startIntake, type RunningIntake } from '../../../src/intake/index.js';
import { kubeCaseApi, type CaseApi } from '../../../src/intake/kube.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startCaseController } from '../../testenv/operator.js';
import { freePort } from '../../testenv/ports.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

/**
 * The quarantine sweep (ADR 0027) against the real API server, as the operator's ServiceAccount:
 * network-quarantine labels no case accounts for are removed after the grace; a label whose case
 * pinned the pod, or whose case the intake has yet to write, stays. And the intake creates a
 * deleted standing policy again before its next label.
 *
 * The sweep's grace is measured on a clock the test moves, so no test waits for time to pass.
 */
const TOKEN = 'sweep-test-token-0123456789abcdef';
const GRACE_MS = 15 * 60_000;
const fixture = readFileSync(
  join(import.meta.dirname, '..', '..', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);
const event = (namespace: string, pod: string) =>
  fixture.replaceAll('"default"', `"${namespace}"`).replaceAll('"alpine"', `"${pod}"`);

let cluster: Cluster;
let admin: KubeConfig;
let opKc: KubeConfig;
let w: Workloads;
let net: NetworkingV1Api;
let intake: RunningIntake;
let operator: Awaited<ReturnType<typeof startCaseController>>;
let walDir: string;
let clock = 0;
const registry = createRegistry();
let sweeper: QuarantineSweeper;

/** Case creates by the intake wait while the gate is shut: the window between label and case. */
let gate: Promise<void> = Promise.resolve();
let openGate: () => void = () => {};
const shutGate = () => {
  gate = new Promise((resolve) => (openGate = resolve));
};

const post = (body: string) => postLikeFalcosidekick(intake.url, body, { Authorization: `Bearer ${TOKEN}` });
const readPod = (namespace: string, name: string) => w.core.readNamespacedPod({ namespace, name });
const removedTotal = async (reason: string) => {
  const m = await registry.getSingleMetricAsString('amber_quarantine_labels_removed_total');
  const line = m.split('\n').find((l) => l.includes(`reason="${reason}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
};
/** Two sweeps: one now, one a full grace later (the label must be unaccounted at both). */
async function sweepAcrossGrace() {
  const first = await sweeper.runOnce();
  clock += GRACE_MS;
  const second = await sweeper.runOnce();
  return { first, second };
}

async function createPod(namespace: string, name: string, labels: Record<string, string>): Promise<V1Pod> {
  return w.core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name, labels },
      spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'busybox' }] },
    },
  });
}
const isolatedFor = (value: string) => ({
  app: 'web',
  [CASE_LABEL]: value,
  [QUARANTINE_LABEL]: 'true',
  [NETWORK_QUARANTINE_LABEL]: value,
});

beforeAll(async () => {
  cluster = await startCluster();
  admin = cluster.kubeConfig();
  await installCrds(admin);
  w = new Workloads(admin);
  net = admin.makeApiClient(NetworkingV1Api);
  for (const ns of ['shop', 'race', 'fresh']) await w.namespace(ns);
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
  walDir = mkdtempSync(join(tmpdir(), 'amber-sweep-'));
  const real = kubeCaseApi(opKc);
  const api: CaseApi = {
    ...real,
    createCase: async (body) => {
      await gate;
      return real.createCase(body);
    },
  };
  intake = await startIntake({
    kubeConfig: opKc,
    registry,
    logger: silentLogger,
    token: TOKEN,
    port: await freePort(),
    host: '127.0.0.1',
    api,
    limits: { maxOpenCases: 100, protectedNamespaces: [OPERATOR_NAMESPACE, 'kube-system'] },
    wal: { baseDir: walDir, name: 'test', maxBytes: 8 * 1024 * 1024 },
    safety: { operatorNamespace: OPERATOR_NAMESPACE, allowKubeSystem: false, protectedNamespaces: [] },
  });
  await waitFor(
    'policy in force',
    async () => intake.engine.policyNames(),
    (n) => n.includes('shells'),
  );
  operator = await startCaseController(opKc);
  sweeper = new QuarantineSweeper({
    clients: new KubeClients(opKc),
    logger: silentLogger,
    registry,
    graceMs: GRACE_MS,
    pendingPods: () => intake.engine.pendingPods(),
    now: () => clock,
  });
});

afterAll(async () => {
  openGate();
  await intake?.close();
  await operator?.stop();
  await cluster?.stop();
  if (walDir) rmSync(walDir, { recursive: true, force: true });
});

describe('the quarantine sweep', () => {
  it('attack: a label naming no case (written by anyone who may patch pods) is removed once the grace has passed, not before', async () => {
    const planted = await createPod('shop', 'ghost', isolatedFor('no-such-case'));
    const before = await removedTotal('no-case');

    const first = await sweeper.runOnce();
    expect(first.removed).toEqual([]);
    expect(first.waiting).toBeGreaterThanOrEqual(1);
    // Within the grace nothing is written.
    expect((await readPod('shop', 'ghost')).metadata?.resourceVersion).toBe(
      planted.metadata?.resourceVersion,
    );

    clock += GRACE_MS - 1;
    expect((await sweeper.runOnce()).removed).toEqual([]);
    clock += 1;
    const second = await sweeper.runOnce();
    expect(second.removed.map((r) => `${r.namespace}/${r.name}:${r.reason}`)).toEqual(['shop/ghost:no-case']);

    const after = await readPod('shop', 'ghost');
    expect(after.metadata?.uid).toBe(planted.metadata?.uid);
    expect(after.metadata?.labels).toEqual({ app: 'web' });
    expect(await removedTotal('no-case')).toBe(before + 1);
    const events = await waitFor(
      'Event on the pod',
      () => w.core.listNamespacedEvent({ namespace: 'shop', fieldSelector: 'involvedObject.name=ghost' }),
      (l) => l.items.length > 0,
    );
    expect(events.items.map((e) => e.reason)).toEqual(['QuarantineLabelRemoved']);
  });

  it('a label whose case pinned the pod stays; the same case’s name planted on another pod goes', async () => {
    const suspect = await createPod('shop', 'web-0', { app: 'web' });
    await w.createCase('case-web', { target: { namespace: 'shop', pod: 'web-0' }, reason: 'test' });
    const kase = await w.waitForPhase('case-web', 'Contained');
    expect((kase.status as { podUID?: string } | undefined)?.podUID).toBe(suspect.metadata?.uid);
    const contained = await readPod('shop', 'web-0');
    expect(contained.metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBe('case-web');
    // The attacker copies the case's labels onto a pod of its own.
    await createPod('shop', 'decoy', isolatedFor('case-web'));

    const { second } = await sweepAcrossGrace();
    expect(second.removed.map((r) => `${r.name}:${r.reason}`)).toEqual(['decoy:case-targets-another-pod']);
    const still = await readPod('shop', 'web-0');
    expect(still.metadata?.resourceVersion).toBe(contained.metadata?.resourceVersion);
    expect(still.metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBe('case-web');
    expect((await readPod('shop', 'decoy')).metadata?.labels).toEqual({ app: 'web' });
  });

  it('a label left naming a released case goes after the grace', async () => {
    await w.patchCaseSpec('case-web', { release: true });
    await waitFor(
      'labels removed by the release',
      () => readPod('shop', 'web-0'),
      (p) => p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] === undefined,
    );
    // The release lets go of the pod it pinned; a copy of its labels elsewhere is the sweep's.
    await createPod('shop', 'leftover', isolatedFor('case-web'));
    const { second } = await sweepAcrossGrace();
    expect(second.removed.map((r) => `${r.name}:${r.reason}`)).toEqual(['leftover:case-released']);
    expect((await readPod('shop', 'leftover')).metadata?.labels).toEqual({ app: 'web' });
  });

  it('the race: a label the intake wrote before creating its case stays, past any grace, and the case adopts the pod', async () => {
    shutGate();
    const suspect = await createPod('race', 'api-0', { app: 'api' });
    expect((await post(event('race', 'api-0'))).status).toBe(202);
    const name = caseNameFor({ namespace: 'race', pod: 'api-0' });
    const labelled = await waitFor(
      'pod labelled by the intake',
      () => readPod('race', 'api-0'),
      (p) => p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] === name,
    );
    expect(intake.engine.pendingPods()).toContain('race/api-0');
    // The case does not exist yet; the sweep leaves the label, however long it waits.
    await expect(w.getCase(name)).rejects.toMatchObject({ code: 404 });
    const { first, second } = await sweepAcrossGrace();
    clock += 10 * GRACE_MS;
    const third = await sweeper.runOnce();
    for (const pass of [first, second, third]) expect(pass.removed.map((r) => r.name)).not.toContain('api-0');
    expect((await readPod('race', 'api-0')).metadata?.resourceVersion).toBe(
      labelled.metadata?.resourceVersion,
    );

    openGate();
    const kase = await w.waitForPhase(name, 'Contained');
    expect((kase.status as { podUID?: string } | undefined)?.podUID).toBe(suspect.metadata?.uid);
    const after = await sweepAcrossGrace();
    expect(after.second.removed.map((r) => r.name)).not.toContain('api-0');
    expect((await readPod('race', 'api-0')).metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBe(name);
  });

  it('attack on the write: a pod adopted between the sweep’s read and its write keeps its label (resourceVersion precondition)', async () => {
    await createPod('shop', 'late', isolatedFor('late-case'));
    await sweeper.runOnce();
    clock += GRACE_MS;
    const world = await sweeper.gather();
    const plan = sweeper.plan(world);
    expect(plan.removals.map((r) => r.name)).toContain('late');
    // A case's labelling lands after the read (here by hand: any change to the pod will do).
    await new KubeClients(admin).patchPod('shop', 'late', { metadata: { labels: { adopted: 'yes' } } });
    const result = await sweeper.apply(plan);
    expect(result.removed.map((r) => r.name)).not.toContain('late');
    expect(result.conflicts).toBeGreaterThanOrEqual(1);
    expect((await readPod('shop', 'late')).metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBe('late-case');
  });
});

describe('the intake’s standing policy cache', () => {
  it('attack: a deleted standing policy is created again before the intake’s next label in that namespace', async () => {
    // No case is written meanwhile (the gate), so no reconciler puts the policy back: the intake must.
    shutGate();
    await createPod('fresh', 'one', { app: 'one' });
    expect((await post(event('fresh', 'one'))).status).toBe(202);
    await waitFor(
      'first pod labelled',
      () => readPod('fresh', 'one'),
      (p) => p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] !== undefined,
    );
    expect(intake.isolator?.knowsStandingPolicy('fresh')).toBe(true);
    await net.readNamespacedNetworkPolicy({ namespace: 'fresh', name: STANDING_POLICY_NAME });

    await net.deleteNamespacedNetworkPolicy({ namespace: 'fresh', name: STANDING_POLICY_NAME });
    await waitFor(
      'the intake saw the delete',
      async () => intake.isolator?.knowsStandingPolicy('fresh'),
      (known) => known === false,
    );
    await createPod('fresh', 'two', { app: 'two' });
    expect((await post(event('fresh', 'two'))).status).toBe(202);
    const two = await waitFor(
      'second pod labelled',
      () => readPod('fresh', 'two'),
      (p) => p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] !== undefined,
    );
    const policy = await net.readNamespacedNetworkPolicy({ namespace: 'fresh', name: STANDING_POLICY_NAME });
    // Created before the label. (Resource versions are opaque to clients; with etcd they are its
    // revision, which orders every write — good enough for a test of this order.)
    expect(Number(policy.metadata?.resourceVersion)).toBeLessThan(Number(two.metadata?.resourceVersion));
    expect(selectorMatches(policy.spec?.podSelector, two.metadata!.labels!)).toBe(true);
    expect(intake.isolator?.knowsStandingPolicy('fresh')).toBe(true);
    openGate();
  });
});
