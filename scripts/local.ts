// The local default setup (README: bash scripts/local.sh). Everything is real and on this
// machine: etcd, kube-apiserver, kube-controller-manager, MinIO with Object Lock, a real node
// (containerd, runc, bridge CNI, kubelet, kube-router enforcing NetworkPolicy) running the amber
// image built from the Dockerfile, and `amber operator` as its ServiceAccount. A suspect pod does
// what an intruder does, a Falco event about it reaches the webhook as Falcosidekick posts it,
// the operator contains the pod and runs the collection Job on the node, and the run ends when
// the evidence is sealed and `amber verify` has checked it.
//
//   --keep     leave everything running until Ctrl-C
//   --inline   the old path without a node (scripts/local-inline.ts); taken by itself, saying
//              why, when a real node cannot run here
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { BatchV1Api } from '@kubernetes/client-node';
import { S3EvidenceStore } from '../src/evidence/s3-store.js';
import { createLogger } from '../src/observability/logger.js';
import { createRegistry } from '../src/observability/metrics.js';
import { cacheDir, versions } from '../test/testenv/binaries.js';
import { nodeUnavailable } from '../test/testenv/node.js';
import { OPERATOR_NAMESPACE } from '../test/testenv/rbac.js';
import { NAMESPACE, startNodeScenario, type NodeScenario } from '../test/testenv/node-scenario.js';
import { amberCli, runInline } from './local-inline.js';

const { values: flags } = parseArgs({
  options: {
    keep: { type: 'boolean', default: false },
    inline: { type: 'boolean', default: false },
  },
});
const say = (msg: string) => console.log(`\n\u25b6 ${msg}`);

if (flags.inline) {
  say('--inline: no node; the operator collects from a runc container this script makes itself');
  await runInline(flags);
}
const unavailable = nodeUnavailable();
if (unavailable) {
  say(`falling back to --inline: a real node cannot run here (${unavailable})`);
  await runInline(flags);
}

const started = Date.now();
const dir = mkdtempSync(join(tmpdir(), 'amber-local-'));
const logger = createLogger({ component: 'operator' });
logger.level = process.env.AMBER_LOG_LEVEL ?? 'warn';
let scenario: NodeScenario | undefined;
const cleanup = async () => {
  say('stopping: pods, node (iptables, bridge, mounts, cgroups cleaned), operator, MinIO, control plane');
  await scenario?.stop();
};
// Ctrl-C: the harness's own SIGINT hooks (test/testenv/process.ts, node.ts) kill every process
// it started and clean the node synchronously, then exit 130; they run before any async stop.
process.prependOnceListener('SIGINT', () =>
  console.log(
    '\n\u25b6 Ctrl-C: killing the environment and cleaning the node (iptables, bridge, mounts, cgroups)',
  ),
);

try {
  say(`operator logs at level ${logger.level} (AMBER_LOG_LEVEL=info for more)`);
  scenario = await startNodeScenario({
    dir,
    logger,
    say,
    // A fatal error stops the environment too, not only the operator.
    exit: (code) => void cleanup().then(() => process.exit(code)),
  });
  const s = scenario;
  const { minio } = s;
  console.log(`  environment ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  say(
    'a suspect pod on the node does what an intruder does: drops a binary, runs it and deletes it, ' +
      'writes /etc/evil.conf and a crontab, listens on 4444, holds a connection to another pod',
  );
  const suspect = await s.suspect('web-0');
  const containerId = suspect.pod.status!.containerStatuses![0]!.containerID!;
  console.log(`  ${NAMESPACE}/web-0 at ${suspect.pod.status!.podIP} (${containerId.slice(0, 25)}…)`);
  console.log(
    `  connection web-0 -> peer ${s.peer.status!.podIP}:8080 established; ${await suspect.ticks()} bytes received so far`,
  );

  say('Falco fires: a real event, posted to the webhook the way Falcosidekick does');
  const { caseName, postedAt } = await s.alert(suspect);
  console.log(`  webhook accepted it: case ${caseName}`);
  const sealed = await s.waitSealed(caseName);
  const sealedMs = Date.now() - postedAt;
  say(`case ${caseName}: ${sealed.status.phase} ${(sealedMs / 1000).toFixed(1)} s after the alert`);
  for (const e of sealed.status.timeline ?? []) {
    const at = e.time ? `+${((Date.parse(e.time) - postedAt) / 1000).toFixed(1)} s` : '';
    console.log(`  ${at.padStart(8)}  ${e.action.padEnd(20)} ${e.outcome.padEnd(9)} ${e.message ?? ''}`);
  }
  for (const c of sealed.status.conditions ?? [])
    console.log(`  condition ${c.type}=${c.status} (${c.reason}) ${c.message}`);
  const names = (sealed.status.artifacts ?? []).map((a) => a.name);
  console.log(`  ${names.length} artifacts; manifest ${sealed.status.manifest?.uri ?? '(none)'}`);
  if (sealed.status.phase !== 'Sealed') throw new Error(`the case ended ${sealed.status.phase}, not Sealed`);
  // The main job must show what the intruder did: a missing artifact is a failure here, not a gap.
  for (const wanted of [
    '/filesystem/diff.json',
    '/filesystem/writable-layer.tar',
    '/processes.json',
    '/network.json',
    'orchestrator/logs/main.current.log',
  ])
    if (!names.some((n) => n.endsWith(wanted)))
      throw new Error(`${wanted.replace(/^\//, '')} was not collected: see the container's report.json`);

  say('the connection web-0 held open before containment');
  const store = new S3EvidenceStore({
    client: minio.client(),
    bucket: minio.bucket,
    prefix: 'amber',
    registry: createRegistry(),
  });
  const container = names
    .find((n) => n.startsWith('containers/'))!
    .split('/')
    .slice(0, 2)
    .join('/');
  const read = async (name: string) => {
    const chunks: Buffer[] = [];
    for await (const chunk of await store.get(caseName, name)) chunks.push(Buffer.from(chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8');
  };
  const network = await read(`${container}/network.json`);
  console.log(
    `  in the socket table (${container}/network.json): ${network.includes(s.peer.status!.podIP!) ? 'yes' : 'NO'}`,
  );
  const cut = names.includes(`${container}/connections-cut.json`)
    ? (JSON.parse(await read(`${container}/connections-cut.json`)) as {
        flows: { address: string; direction: string; deleted?: number; error?: string }[];
      })
    : { flows: [] };
  const failed = cut.flows.filter((f) => f.error);
  const deleted = cut.flows.reduce((n, f) => n + (f.deleted ?? 0), 0);
  console.log(
    `  the collector then deleted ${deleted} connection-tracking entries of ${suspect.pod.status!.podIP} on the node` +
      (failed.length ? `; FAILED for ${failed.map((f) => `${f.direction}: ${f.error}`).join(', ')}` : ''),
  );
  const before = await suspect.ticks();
  await sleep(2_000); // ten of the peer's ticks
  const after = await suspect.ticks();
  console.log(
    after === before
      ? `  nothing more arrived over it in 2 s (${after} bytes received in all): the deny-all policy now applies to it too`
      : `  STILL OPEN: ${after - before} bytes arrived over it in 2 s after the seal`,
  );

  // A new connection to the contained pod, from the pod it was talking to: dropped by the policy.
  const probe = await s.pods.exec(NAMESPACE, 'peer', [
    'sh',
    '-c',
    `echo probe | nc -w 2 ${suspect.pod.status!.podIP} 4444 >/dev/null 2>&1 && echo connected || echo 'no answer'`,
  ]);
  console.log(`  a new connection from peer to web-0:4444 (its listener): ${probe.stdout.trim()}`);

  const location = sealed.status.manifest!.uri.replace(/[^/]*$/, '');
  const s3Env = {
    AWS_ACCESS_KEY_ID: minio.accessKey,
    AWS_SECRET_ACCESS_KEY: minio.secretKey,
    AWS_REGION: minio.region,
  };
  const s3Flags = ['--public-key', s.publicKeyFile, '--endpoint', minio.endpoint, '--path-style'];
  say(`amber verify ${location}`);
  const verify = await amberCli(['verify', location, ...s3Flags], s3Env);

  say('amber report: the case written up for an investigator (HTML and Markdown)');
  const report = await amberCli(
    ['report', location, ...s3Flags, '--out', join(dir, `${caseName}-report`)],
    s3Env,
  );

  const kubectl = `${join(cacheDir, `kubelet-${versions.kube}`, 'kubectl')} --kubeconfig ${join(dir, 'admin.kubeconfig')}`;
  say('what to look at');
  console.log(`  the evidence:  ${location}  (MinIO ${minio.endpoint}, bucket ${minio.bucket})`);
  console.log(
    `  verify again:  AWS_ACCESS_KEY_ID=${minio.accessKey} AWS_SECRET_ACCESS_KEY=${minio.secretKey} AWS_REGION=${minio.region} npx tsx src/cmd/amber.ts verify ${location} ${s3Flags.join(' ')}`,
  );
  console.log(`  the case:      ${kubectl} get forensiccase ${caseName} -o yaml`);
  console.log(`  the isolation: ${kubectl} -n ${NAMESPACE} get networkpolicy,pods --show-labels`);
  const jobs = await s.cluster
    .kubeConfig()
    .makeApiClient(BatchV1Api)
    .listNamespacedJob({ namespace: OPERATOR_NAMESPACE });
  for (const job of jobs.items)
    console.log(`  the Job:       ${kubectl} -n ${OPERATOR_NAMESPACE} logs job/${job.metadata!.name!}`);
  console.log(`  the webhook:   POST ${s.operator.intake!.url}  (Authorization: Bearer ${s.token})`);
  console.log(`  metrics:       ${s.operator.metricsUrl}/metrics`);
  console.log(`  node logs:     ${s.node.logDir} (containerd, kubelet, kube-router)`);
  console.log(
    '  DEMO SETTING: jobCredentials.sealAfterExpiry is false here, so the seal does not wait the 15 minutes\n' +
      "  until the collection Job's S3 credentials expire (ADR 0009). Never turn it off in production.",
  );
  if (!flags.keep)
    console.log(
      '  all of this stops when the script ends (the report files stay): `bash scripts/local.sh --keep` keeps it running',
    );
  say(
    `done in ${((Date.now() - started) / 1000).toFixed(0)} s; alert -> sealed ${(sealedMs / 1000).toFixed(1)} s`,
  );

  if (flags.keep) {
    say('running until Ctrl-C');
    await new Promise(() => {});
  }
  await cleanup();
  process.exit(verify === 0 && report === 0 ? 0 : 1);
} catch (err) {
  console.error(err);
  await cleanup();
  process.exit(1);
}
