// Falco alert -> volatile evidence sealed, on the real node (test/testenv/node.ts): the same setup
// as `scripts/local.sh` (test/testenv/node-scenario.ts). Each run starts a suspect pod that does
// what an intruder does, posts a Falco event about it to the webhook as Falcosidekick posts it,
// and waits for the case to be Sealed: contained, the collection Job run on the node from the
// image built from the Dockerfile, the evidence streamed to MinIO and the manifest signed.
// Times come from the case's own timeline (millisecond timestamps), measured from the POST.
// Needs root and the node's components (bash scripts/testenv-build.sh node); one node per
// machine, so run it under the integration lock:
//   flock /tmp/amber-integration.lock npx tsx bench/alert-to-sealed-node.ts [runs=10]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/observability/logger.js';
import { nodeUnavailable } from '../test/testenv/node.js';
import { NAMESPACE, startNodeScenario, type SealedCase } from '../test/testenv/node-scenario.js';
import { summary } from './stats.js';

const runs = Number(process.argv[2] ?? 10);
const unavailable = nodeUnavailable();
if (unavailable) {
  console.error(`alert-to-sealed-node: cannot run here: ${unavailable}`);
  process.exit(2);
}

const say = (msg: string) => console.error(`[bench] ${msg}`);
const scenario = await startNodeScenario({
  dir: mkdtempSync(join(tmpdir(), 'amber-bench-node-')),
  logger: silentLogger,
  say,
  exit: (code) => void scenario.stop().then(() => process.exit(code)),
});
const at = (kase: SealedCase, action: string, from: number) => {
  const e = kase.status.timeline?.find((t) => t.action === action && t.outcome === 'Succeeded');
  return e?.time ? Date.parse(e.time) - from : NaN;
};
const isolated: number[] = [];
const orchestrator: number[] = [];
const collected: number[] = [];
const sealed: number[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const suspect = await scenario.suspect(`suspect-${i}`);
    const { caseName, postedAt } = await scenario.alert(suspect);
    const kase = await scenario.waitSealed(caseName);
    if (kase.status.phase !== 'Sealed') throw new Error(`${caseName} ended ${kase.status.phase}`);
    isolated.push(at(kase, 'IsolateNetwork', postedAt));
    orchestrator.push(at(kase, 'CollectOrchestrator', postedAt));
    collected.push(at(kase, 'CollectEvidence', postedAt));
    sealed.push(at(kase, 'SealEvidence', postedAt));
    console.log(
      `run ${i + 1}/${runs} ${caseName}: isolated ${isolated.at(-1)} ms, collected ${collected.at(-1)} ms, sealed ${sealed.at(-1)} ms`,
    );
    // The node runs at most 30 pods, and a finished suspect only costs CPU the next run needs.
    await scenario.pods.core.deleteNamespacedPod({
      namespace: NAMESPACE,
      name: suspect.name,
      gracePeriodSeconds: 0,
    });
  }
  console.log(summary('alert -> network isolated', isolated));
  console.log(summary('alert -> orchestrator view collected', orchestrator));
  console.log(summary('alert -> node evidence collected (Job done)', collected));
  console.log(summary('alert -> sealed', sealed));
  console.log(
    'demo setting, as in scripts/local.sh: jobCredentials.sealAfterExpiry is false (in production the seal ' +
      "waits until the Job's S3 credentials expire, at least 900 s; ADR 0009)",
  );
} finally {
  await scenario.stop();
}
process.exit(0);
