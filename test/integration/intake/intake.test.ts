import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { FORENSIC_CASE } from '../../../src/api/forensiccase.js';
import { RESPONSE_POLICY } from '../../../src/api/responsepolicy.js';
import { caseNameFor } from '../../../src/intake/cases.js';
import { startIntake, type RunningIntake } from '../../../src/intake/index.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { freePort } from '../../testenv/ports.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { aimAtPod } from '../../unit/intake/audit-fixtures.js';

/**
 * End to end against a real kube-apiserver: real Falco events posted over real HTTP, in the shape
 * Falcosidekick's webhook output sends them (test/testenv/falcosidekick.ts says why it is not the
 * real Falcosidekick yet), to the intake listening on a port.
 */
const TOKEN = 'integration-token-0123456789';
const fixtures = join(import.meta.dirname, '..', '..', 'fixtures', 'falco');
const fixture = (name: string) => readFileSync(join(fixtures, name), 'utf8');
const withPod = (body: string, pod: string) => body.replaceAll('"hellofalco"', `"${pod}"`);

let cluster: Cluster;
let kc: KubeConfig;
let objects: CustomObjectsApi;
let intake: RunningIntake;
const registry = createRegistry();

async function listCases(): Promise<
  Array<{
    metadata: { name: string };
    spec: { target: { pod: string }; containment: { cordonNode: boolean } };
    status?: { alerts?: { count: number; rules: string[] } };
  }>
> {
  const list = (await objects.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: FORENSIC_CASE.plural,
  })) as { items: never[] };
  return list.items;
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(100);
  }
}

beforeAll(async () => {
  cluster = await startCluster();
  kc = cluster.kubeConfig();
  await installCrds(kc);
  objects = kc.makeApiClient(CustomObjectsApi);
  await objects.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RESPONSE_POLICY.plural,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: RESPONSE_POLICY.kind,
      metadata: { name: 'contain-shells' },
      spec: {
        match: { minimumPriority: 'Notice', auditTargets: true },
        limits: { maxOpenCases: 3, maxCordonedNodes: 1, maxCordonedNodesPercent: 100 },
      },
    },
  });
  // As the operator's ServiceAccount: deploy/rbac.yaml must grant what the intake uses.
  intake = await startIntake({
    kubeConfig: await operatorKubeConfig(cluster),
    registry,
    logger: silentLogger,
    token: TOKEN,
    port: await freePort(),
    host: '127.0.0.1',
    limits: { maxOpenCases: 10, maxCordonedNodes: 5, maxCordonedNodesPercent: 100 },
    flushIntervalMs: 100,
  });
  await eventually(
    async () => intake.engine.policyNames(),
    (n) => n.includes('contain-shells'),
  );
});

afterAll(async () => {
  await intake?.close();
  await cluster?.stop();
});

const post = (body: string, token = TOKEN) =>
  postLikeFalcosidekick(intake.url, body, { Authorization: `Bearer ${token}` });

describe('intake against a real kube-apiserver', () => {
  it('answers 401 to a wrong token and creates nothing', async () => {
    const res = await post(fixture('syscall-terminal-shell.json'), 'wrong-token-0123456789');
    expect(res.status).toBe(401);
    // Only the engine's queue leads to a write, and nothing went into it.
    expect(intake.engine.queueDepth).toBe(0);
    expect(await listCases()).toHaveLength(0);
  });

  it('opens a case from a real syscall alert, and attaches duplicates to it', async () => {
    const first = await post(fixture('syscall-read-sensitive-file.json'));
    expect(first.status).toBe(202);
    expect(JSON.parse(first.body)).toMatchObject({
      outcome: 'opened',
      case: caseNameFor({ namespace: 'default', pod: 'hellofalco' }),
    });
    for (let i = 0; i < 4; i++)
      expect(JSON.parse((await post(fixture('syscall-read-sensitive-file.json'))).body).outcome).toBe(
        'attached',
      );
    const cases = await eventually(listCases, (l) => l[0]?.status?.alerts?.count === 5);
    expect(cases).toHaveLength(1);
    expect(cases[0]).toMatchObject({
      spec: {
        target: { namespace: 'default', pod: 'hellofalco' },
        policyRef: 'contain-shells',
        alert: {
          rule: 'Read sensitive file untrusted',
          priority: 'Warning',
          hostname: 'aks-aksnp0lab-30954262-vmss000002',
        },
      },
      status: {
        alerts: {
          count: 5,
          rules: ['Read sensitive file untrusted'],
          firstSeen: '2025-11-24T13:22:11.153390386Z',
        },
      },
    });
  });

  it('acts on a k8s_audit target only when the audited request succeeded', async () => {
    const outcome = async (body: string) => JSON.parse((await post(body)).body) as Record<string, unknown>;
    const nginx = (f: string) => aimAtPod(fixture(f), 'hello-app', 'nginx-676b6c5bbc-4xc6t');
    // The API server refused it (403): Falco still names the pod. Answered, counted, no case.
    expect(await outcome(nginx('k8saudit-disallowed-user-denied.json'))).toMatchObject({
      accepted: true,
      outcome: 'not-acted',
      reason: 'audit-request-not-succeeded',
    });
    // The stock Attach/Exec rule does not output ka.response.code: it may have been refused.
    expect(await outcome(fixture('k8saudit-attach-exec-pod.json'))).toMatchObject({
      outcome: 'not-acted',
      reason: 'audit-request-not-succeeded',
    });
    // Allowed (200), and the policy opts in to audit targets: a case.
    expect(await outcome(nginx('k8saudit-disallowed-user.json'))).toMatchObject({ outcome: 'opened' });
    // Allowed, but only a read: anyone who may read pods could aim such an alert at an innocent
    // pod. Not acted on, and not recorded on the open case.
    const read = nginx('k8saudit-disallowed-user.json').replace('"ka.verb":"update"', '"ka.verb":"get"');
    expect(read).toContain('"ka.verb":"get"');
    expect(await outcome(read)).toMatchObject({ outcome: 'not-acted', reason: 'audit-request-read-only' });
    // A refused request naming the pod now is not recorded on its case either.
    expect(await outcome(nginx('k8saudit-disallowed-user-denied.json'))).toMatchObject({
      reason: 'audit-request-not-succeeded',
    });
    // The attack of issue 10: get Falco itself contained with a request naming its pod. Refused:
    // nothing; even allowed, Falco's namespace is protected by default.
    expect(
      await outcome(aimAtPod(fixture('k8saudit-disallowed-user-denied.json'), 'falco', 'falco-x7k2p')),
    ).toMatchObject({ reason: 'audit-request-not-succeeded' });
    expect(
      await outcome(aimAtPod(fixture('k8saudit-disallowed-user.json'), 'falco', 'falco-x7k2p')),
    ).toMatchObject({ outcome: 'not-acted', reason: 'protected-namespace' });
    // About another object (a nodepool): no target.
    expect(await outcome(fixture('k8saudit-disallowed-user.json'))).toMatchObject({
      outcome: 'not-acted',
      reason: 'no-target',
    });
    const cases = await eventually(listCases, (l) => l.length === 2);
    expect(cases.map((c) => c.spec.target.pod).sort()).toEqual(['hellofalco', 'nginx-676b6c5bbc-4xc6t']);
    // The node limit is not the intake's (ADR 0010): the case keeps the policy's containment and
    // the case reconciler decides from the nodes Amber holds, not from the alerts' hostnames.
    const audit = cases.find((c) => c.spec.target.pod.startsWith('nginx'))!;
    expect(audit.spec.containment.cordonNode).toBe(true);
    await sleep(300);
    expect(
      (await listCases()).find((c) => c.spec.target.pod.startsWith('nginx'))?.status?.alerts?.count,
    ).toBe(1);
    expect(await registry.metrics()).toMatch(
      /amber_alerts_not_acted_total\{reason="audit-request-not-succeeded"\} 4/,
    );
    expect(await registry.metrics()).toMatch(
      /amber_alerts_not_acted_total\{reason="audit-request-read-only"\} 1/,
    );
  });

  it('holds the policy open-case limit', async () => {
    expect(
      JSON.parse((await post(withPod(fixture('syscall-read-sensitive-file.json'), 'third'))).body).outcome,
    ).toBe('opened');
    const refused = JSON.parse(
      (await post(withPod(fixture('syscall-read-sensitive-file.json'), 'fourth'))).body,
    );
    expect(refused).toMatchObject({ outcome: 'not-acted', reason: 'policy-max-open-cases' });
    // Once every accepted alert is written (the queue counts alerts until their write
    // succeeds), nothing more can appear: the refused one was never queued.
    await eventually(
      async () => intake.engine.queueDepth,
      (n) => n === 0,
    );
    expect(intake.engine.queueDepth).toBe(0);
    expect(await listCases()).toHaveLength(3);
    expect(await registry.metrics()).toMatch(
      /amber_alerts_not_acted_total\{reason="policy-max-open-cases"\} 1/,
    );
  });

  it('keeps alerts while the API server is down and writes them when it is back', async () => {
    const name = caseNameFor({ namespace: 'default', pod: 'hellofalco' });
    const before = (await listCases()).find((c) => c.metadata.name === name)!.status!.alerts!.count;
    await cluster.stopApiServer();
    for (let i = 0; i < 10; i++)
      expect((await post(fixture('syscall-read-sensitive-file.json'))).status).toBe(202);
    expect(intake.engine.queueDepth).toBe(10);
    await cluster.startApiServer();
    const after = await eventually(
      listCases,
      (l) => l.find((c) => c.metadata.name === name)?.status?.alerts?.count === before + 10,
      60_000,
    );
    expect(after.find((c) => c.metadata.name === name)!.status!.alerts!.count).toBe(before + 10);
  });
});

describe('ResponsePolicy status, written by the intake as the operator', () => {
  type Policy = {
    metadata: { name: string; generation: number; resourceVersion: string };
    spec: Record<string, unknown>;
    status?: {
      observedGeneration?: number;
      conditions?: Array<{
        type: string;
        status: string;
        reason: string;
        message: string;
        observedGeneration?: number;
      }>;
    };
  };
  const policyApi = { group: GROUP, version: VERSION, plural: RESPONSE_POLICY.plural };
  const getPolicy = async (name: string) =>
    (await objects.getClusterCustomObject({ ...policyApi, name })) as Policy;
  const inForce = (p: Policy) => p.status?.conditions?.find((c) => c.type === 'InForce');

  it('says a valid policy is in force', async () => {
    const p = await eventually(
      () => getPolicy('contain-shells'),
      (p) => inForce(p)?.status === 'True',
    );
    expect(inForce(p)).toMatchObject({
      status: 'True',
      reason: 'Valid',
      observedGeneration: p.metadata.generation,
    });
    expect(p.status?.observedGeneration).toBe(p.metadata.generation);
  });

  it('says why a policy the API server accepted is not in force, and acts on it once fixed', async () => {
    // The CRD schema has no URL format; the operator's validation has: the API server stores it.
    await objects.createClusterCustomObject({
      ...policyApi,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: RESPONSE_POLICY.kind,
        metadata: { name: 'broken' },
        spec: {
          priority: 100,
          match: { rules: ['Read sensitive*'] },
          evidence: { store: { endpoint: 'not a url' } },
        },
      },
    });
    const broken = await eventually(
      () => getPolicy('broken'),
      (p) => inForce(p) !== undefined,
    );
    expect(inForce(broken)).toMatchObject({
      status: 'False',
      reason: 'InvalidSpec',
      observedGeneration: 1,
      message: expect.stringMatching(/not in force: the spec is invalid:[\s\S]*evidence\.store\.endpoint/),
    });
    expect(intake.engine.policyNames()).not.toContain('broken');

    broken.spec.evidence = { store: { endpoint: 'https://s3.example' } };
    await objects.replaceClusterCustomObject({ ...policyApi, name: 'broken', body: broken });
    const fixed = await eventually(
      () => getPolicy('broken'),
      (p) => inForce(p)?.status === 'True',
    );
    expect(inForce(fixed)).toMatchObject({ status: 'True', reason: 'Valid', observedGeneration: 2 });
    expect(fixed.status?.observedGeneration).toBe(2);
    await eventually(
      async () => intake.engine.policyNames(),
      (n) => n.includes('broken'),
    );
    expect(intake.engine.policyNames()).toContain('broken');
  });
});
