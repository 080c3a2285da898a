import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointSummary } from '../../../src/collector/checkpoint.js';
import { S3EvidenceStore } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import {
  NODE_POD_LOGS,
  NODE_SNAPSHOTS,
  RealNode,
  buildImages,
  cachedCriu,
  nodeUnavailable,
  type Image,
} from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';
import { startCaseController } from '../../testenv/operator.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { forwardToLoopback, type Forward } from '../../testenv/node-scenario.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';
import { createSigningKeySecret } from '../collection/helpers.js';

const unavailable =
  nodeUnavailable() ??
  (cachedCriu() ? undefined : 'CRIU not in the cache; run: bash scripts/testenv-build.sh node');
if (unavailable) console.warn(`SKIPPED test/integration/node/checkpoint.test.ts: ${unavailable}`);

type SealedView = CaseView & {
  status?: CaseView['status'] & {
    artifacts?: { name: string }[];
    timeline?: { action: string; outcome: string; message?: string }[];
  };
};

interface StoredReport {
  collected: { artifact: string }[];
  failed: { what: string; reason: string }[];
}

/**
 * The kubelet checkpoint, requested (issue 12 item 1, ADR 0023): the operator asks the real
 * kubelet of the real node, as its ServiceAccount with deploy/rbac.yaml (create on
 * nodes/checkpoint, nothing on nodes/proxy), to checkpoint the suspect's container with the
 * CRIU runc is given here (Debian sid's 4.2.1); the collection Job seals exactly that archive.
 */
describe.skipIf(unavailable)('the kubelet checkpoint, requested on a real node', () => {
  let cluster: Cluster;
  let minio: Minio;
  let node: RealNode;
  let pods: NodePods;
  let w: Workloads;
  let amber: Image;
  let forward: Forward;
  let publicKeyPem: string;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  let store: S3EvidenceStore;
  let scratch: string;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'amber-checkpoint-test-'));
    amber = buildImages('amber').amber!;
    [cluster, minio] = await Promise.all([
      startCluster({ realNode: true, controllerManager: true }),
      startMinio(),
    ]);
    node = await RealNode.start(cluster, [amber]);
    forward = await forwardToLoopback(node.address, Number(new URL(minio.endpoint).port));
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    pods = new NodePods(admin);
    w = new Workloads(admin);
    await w.namespace('shop');
    const opKc = await operatorKubeConfig(cluster);
    ({ publicKeyPem } = await createSigningKeySecret(admin));
    operator = await startCaseController(opKc, {
      collection: {
        mode: 'job',
        image: amber.ref,
        snapshotterRoots: [NODE_SNAPSHOTS],
        podLogsDir: NODE_POD_LOGS,
        pollMs: 1_000,
        jobCredentials: { sealAfterExpiry: false },
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
        // The kubelet's serving certificate is issued by the test cluster's CA.
        checkpoint: { kubeletCA: cluster.pki.caCert, checkpointsDir: node.checkpointsDir },
      },
    });
    store = new S3EvidenceStore({
      client: minio.client(),
      bucket: minio.bucket,
      prefix: 'amber',
      registry: createRegistry(),
    });
  }, 20 * 60_000);
  afterAll(async () => {
    await operator?.stop();
    await forward?.close();
    await node?.stop();
    await minio?.stop();
    await cluster?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  let peer: V1Pod | undefined;

  /** A suspect holding a TCP connection to another pod, which sends it a line every 200 ms. */
  async function suspect(name: string): Promise<V1Pod> {
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
    const pod = await pods.run('shop', name, node.images.busybox!.ref, [
      'sh',
      '-c',
      `sleep 3600 | nc ${peer.status!.podIP} 8080 > /tmp/ticks & echo suspect ready; exec sleep 3600`,
    ]);
    const ticks = async () =>
      Number((await pods.exec('shop', name, ['sh', '-c', 'wc -c < /tmp/ticks'])).stdout.trim() || '0');
    const before = await ticks();
    await waitFor('ticks over the held connection', ticks, (n) => n > before);
    return pod;
  }

  async function openCase(name: string, pod: string): Promise<SealedView> {
    await w.createCase(name, {
      target: { namespace: 'shop', pod },
      reason: 'test: checkpoint requested from the kubelet',
      collection: { artifacts: ['processes', 'network', 'checkpoint', 'logs'] },
      evidence: {
        store: { type: 's3', bucket: minio.bucket, endpoint: forward.endpoint, prefix: 'amber/' },
        retention: { mode: 'GOVERNANCE', days: 1 },
      },
    });
    try {
      return (await w.waitForPhase(name, 'Sealed', 180_000)) as SealedView;
    } catch (err) {
      console.log(JSON.stringify((await w.getCase(name)).status, null, 1).slice(0, 4000));
      console.log(node.logTail('kubelet', 30));
      throw err;
    }
  }

  async function read(caseName: string, name: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await store.get(caseName, name)) chunks.push(Buffer.from(chunk as Buffer));
    return Buffer.concat(chunks);
  }

  async function verified(caseName: string): Promise<void> {
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
  }

  const checkpointStep = (kase: SealedView) =>
    kase.status?.timeline?.find((e) => e.action === 'CheckpointContainer');

  it('checkpoints a suspect that holds a connection; the archive the kubelet named is sealed and its processes are in the summary', async () => {
    const pod = await suspect('suspect');
    const kase = await openCase('case-checkpoint', 'suspect');
    const step = checkpointStep(kase);
    console.log(`checkpoint step: ${JSON.stringify(step)}`);
    if (step?.outcome !== 'Succeeded')
      console.log(
        `criu on the node: ${execFileSync('sh', ['-c', 'ls -la /tmp/amber-node/bin; cat /tmp/amber-node/runc-criu; for f in $(find /tmp/amber-node/containerd/state -name criu-dump.log); do tail -40 $f; done'], { encoding: 'utf8' })}\n${node.logTail('containerd', 40)}`,
      );
    expect(step?.outcome).toBe('Succeeded');
    const archivePath = /: (\/\S+\.tar)$/.exec(step!.message!)![1]!;
    const file = archivePath.split('/').pop()!;
    expect(archivePath).toBe(`${node.checkpointsDir}/${file}`);
    expect(file).toMatch(/^checkpoint-suspect_shop-main-\d{4}-\d\d-\d\dT.*\.tar$/);

    const names = (kase.status?.artifacts ?? []).map((a) => a.name);
    const dir = names
      .find((n) => n.startsWith('containers/'))!
      .split('/')
      .slice(0, 2)
      .join('/');
    const artifact = `${dir}/checkpoint/${file.replace(/[^A-Za-z0-9._-]/g, '_')}`;
    expect(names).toContain(artifact);
    expect(names).toContain(`${artifact}.summary.json`);

    const summary = JSON.parse(
      (await read('case-checkpoint', `${artifact}.summary.json`)).toString(),
    ) as CheckpointSummary & { archive: { path: string; size: number; sha256: string } };
    console.log(
      `checkpoint archive: ${summary.archive.size} bytes, ${summary.entriesTotal} entries; sizes ${JSON.stringify(summary.sizes)}; ` +
        `processes ${JSON.stringify(summary.processes.map((p) => `${p.pid}/${p.ppid} ${p.comm}`))}; problems ${JSON.stringify(summary.problems)}`,
    );
    expect(summary.archive.path).toBe(archivePath);
    // The suspect's processes, by the names the kernel gave them: pid 1 exec'd sleep, and the
    // pipeline holding the connection.
    const comms = summary.processes.map((p) => p.comm);
    expect(comms).toContain('nc');
    expect(comms.filter((c) => c === 'sleep').length).toBeGreaterThanOrEqual(2);
    expect(summary.processes.find((p) => p.pid === 1)).toMatchObject({ ppid: 0 });
    // checkpointctl's view: the container's config and its OCI spec.
    expect(JSON.stringify(summary.config)).toContain('suspect');
    expect(JSON.stringify((summary.spec as { process?: unknown }).process)).toContain('sleep 3600');
    expect(summary.entries.some((e) => e.name === 'checkpoint/pstree.img')).toBe(true);
    // What was sealed is the archive itself, byte for byte.
    const sealed = await read('case-checkpoint', artifact);
    expect(sealed.length).toBe(summary.archive.size);

    // The connection is in the socket table read from the host side too, and the suspect is
    // still running: the kubelet's checkpoint leaves it running.
    expect((await read('case-checkpoint', `${dir}/network.json`)).toString()).toContain(peer!.status!.podIP!);
    const now = await pods.core.readNamespacedPod({ namespace: 'shop', name: 'suspect' });
    expect(now.status?.containerStatuses?.[0]?.containerID).toBe(
      pod.status?.containerStatuses?.[0]?.containerID,
    );
    await verified('case-checkpoint');
  });

  it('a kubelet whose runtime cannot checkpoint: the refusal and its answer are a recorded gap, and everything else is sealed', async () => {
    await suspect('suspect-2');
    const failing = join(scratch, 'criu-failing');
    writeFileSync(failing, '#!/bin/sh\necho "criu: swapped for a failing one by the test" >&2\nexit 1\n');
    chmodSync(failing, 0o755);
    node.setCriu(failing);
    let kase: SealedView;
    try {
      kase = await openCase('case-refused', 'suspect-2');
    } finally {
      node.setCriu(cachedCriu() ?? null);
    }
    const step = checkpointStep(kase);
    console.log(`checkpoint step: ${JSON.stringify(step)}`);
    expect(step?.outcome).toBe('Failed');
    expect(step?.message).toMatch(
      /the kubelet answered HTTP 500: checkpointing of shop\/suspect-2\/main failed/,
    );

    const names = (kase.status?.artifacts ?? []).map((a) => a.name);
    const dir = names
      .find((n) => n.startsWith('containers/'))!
      .split('/')
      .slice(0, 2)
      .join('/');
    expect(names.some((n) => n.includes('/checkpoint/'))).toBe(false);
    // Everything else is there and sealed.
    expect(names).toEqual(
      expect.arrayContaining([`${dir}/processes.json`, `${dir}/network.json`, `${dir}/report.json`]),
    );
    const report = JSON.parse((await read('case-refused', `${dir}/report.json`)).toString()) as StoredReport;
    expect(report.failed.find((f) => f.what === 'checkpoint')?.reason).toMatch(
      /^the kubelet did not checkpoint the container: the kubelet answered HTTP 500: checkpointing of shop\/suspect-2\/main failed/,
    );
    expect(kase.status?.conditions?.find((c) => c.type === 'EvidenceCollected')?.status).toBe('True');
    await verified('case-refused');
  });

  // The attack (attacker review): root on the suspect's node answers in the kubelet's place and
  // keeps what it is sent. It must never be the operator's identity (pods, nodes, Jobs); the
  // token it gets may only ask kubelets for checkpoints, for 10 minutes.
  it("the kubelet is asked with a checkpoint-only token: the operator's own identity may not checkpoint, the token may not exec, list pods or act on the API", async () => {
    const opKc = await operatorKubeConfig(cluster);
    const options: RequestOptions = {};
    await opKc.applyToHTTPSOptions(options);
    const n = await cluster.kubeConfig().makeApiClient(CoreV1Api).readNode({ name: node.name });
    const port = n.status!.daemonEndpoints!.kubeletEndpoint!.Port!;
    const status = (path: string, method: string, auth: { bearer?: string }) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: node.address,
            port,
            path,
            method,
            ...(auth.bearer
              ? { headers: { Authorization: `Bearer ${auth.bearer}` } }
              : { cert: options.cert, key: options.key }),
            ca: readFileSync(cluster.pki.caCert),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await status('/checkpoint/shop/no-such-pod/main', 'POST', {})).toBe(403);
    const core = opKc.makeApiClient(CoreV1Api);
    const token = (name: string) =>
      core.createNamespacedServiceAccountToken({
        name,
        namespace: 'amber-system',
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
    const bearer = (await token('amber-checkpoint')).status!.token;
    expect(await status('/pods', 'GET', { bearer })).toBe(403);
    expect(await status('/run/shop/suspect/main?cmd=id', 'POST', { bearer })).toBe(403);
    // Allowed, and answered by the kubelet itself: a pod it does not know.
    expect(await status('/checkpoint/shop/no-such-pod/main', 'POST', { bearer })).toBe(404);
    // On the API server the token may do nothing at all.
    const asToken = new KubeConfig();
    asToken.loadFromOptions({
      clusters: [{ name: 'c', server: cluster.server, caFile: cluster.pki.caCert }],
      users: [{ name: 'u', token: bearer }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await expect(
      asToken.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: 'shop' }),
    ).rejects.toMatchObject({
      code: 403,
    });
    // And the operator may mint tokens of that one ServiceAccount only.
    await expect(token('amber-operator')).rejects.toMatchObject({ code: 403 });
  });
});
