/**
 * ForensicCase created -> Sealed, inline mode (ADR 0006): a real API server, MinIO with Object
 * Lock and a real runc container with an attacker's file in /tmp. Volatile evidence only
 * (processes, network, filesystem diff, targeted files) plus the orchestrator view; no memory,
 * no writable-layer tar. Target (docs/DESIGN): alert -> volatile evidence sealed under 30 s.
 *
 *   npx tsx bench/pipeline.ts [cases]
 *
 * Cases run one after another, each on its own pod of the same container; the time is taken
 * by polling the case every 20 ms from just before its create call.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { installCrds } from '../test/testenv/crds.js';
import { startCluster } from '../test/testenv/kube.js';
import { startMinio } from '../test/testenv/minio.js';
import { startCaseController } from '../test/testenv/operator.js';
import { operatorKubeConfig } from '../test/testenv/rbac.js';
import { startContainer } from '../test/testenv/runc.js';
import { Workloads } from '../test/testenv/workload.js';
import { createPod, createSigningKeySecret, markRunning } from '../test/integration/collection/helpers.js';

const cases = Number(process.argv[2] ?? 5);
const [cluster, minio, c] = await Promise.all([
  startCluster(),
  startMinio(),
  startContainer({
    command: ['/bin/sh', '-c', 'echo implant > /tmp/implant.sh; touch /ready; exec sleep 600'],
  }),
]);
try {
  await c.waitForFile('/ready');
  const admin = cluster.kubeConfig();
  await installCrds(admin);
  const w = new Workloads(admin);
  await w.core.createNode({ body: { metadata: { name: 'node-bench' } } });
  await w.namespace('shop');
  const opKc = await operatorKubeConfig(cluster);
  await createSigningKeySecret(admin);
  const operator = await startCaseController(opKc, {
    collection: {
      mode: 'inline',
      evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
      inline: { hostReferencePid: process.pid, runtimeRoots: { runc: c.stateRoot } },
    },
  });
  const seconds: number[] = [];
  for (let i = 0; i < cases; i++) {
    const pod = `victim-${i}`;
    await createPod(admin, 'shop', pod, 'node-bench');
    await markRunning(admin, 'shop', pod, `runc://${c.id}`);
    const started = performance.now();
    await w.createCase(`bench-${i}`, {
      target: { namespace: 'shop', pod },
      reason: 'bench',
      collection: { artifacts: ['processes', 'network', 'filesystemDiff', 'orchestrator'] },
      evidence: {
        store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint },
        retention: { mode: 'GOVERNANCE', days: 1 },
      },
    });
    for (;;) {
      const phase = (await w.getCase(`bench-${i}`)).status?.phase;
      if (phase === 'Sealed') break;
      if (phase === 'Failed' || performance.now() - started > 120_000)
        throw new Error(`case bench-${i} ended ${phase}`);
      await sleep(20);
    }
    seconds.push((performance.now() - started) / 1000);
  }
  await operator.stop();
  const sorted = [...seconds].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(
    `created -> Sealed (inline, volatile groups, ${cases} cases): min ${sorted[0]!.toFixed(2)} s, median ${median.toFixed(2)} s, max ${sorted.at(-1)!.toFixed(2)} s`,
  );
  console.log(`each: ${seconds.map((s) => s.toFixed(2)).join(', ')}`);
} finally {
  await c.stop();
  await minio.stop();
  await cluster.stop();
}
