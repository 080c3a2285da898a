import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { RealNode, buildImages, nodeUnavailable, type Image } from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';

const unavailable = nodeUnavailable();
if (unavailable) console.warn(`SKIPPED test/integration/node/image.test.ts: ${unavailable}`);

const version = (
  JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

/**
 * The image built from the project's Dockerfile without a Docker engine
 * (scripts/build-images.sh: a local Debian + Node base, `buildah bud --pull=never`), run by the
 * real node as the operator and the collection Job would run it.
 */
describe.skipIf(unavailable)('the amber image, built from the Dockerfile, on a real node', () => {
  let cluster: Cluster;
  let node: RealNode;
  let pods: NodePods;
  let amber: Image;

  beforeAll(async () => {
    const t0 = Date.now();
    // Cached by content: rebuilt only when the Dockerfile's inputs changed.
    amber = buildImages('amber').amber!;
    console.log(`amber image ${amber.ref} ready in ${Date.now() - t0} ms`);
    cluster = await startCluster({ realNode: true });
    node = await RealNode.start(cluster, [amber]);
    console.log('real node cold start', node.times);
    pods = new NodePods(cluster.kubeConfig());
    await pods.core.createNamespace({ body: { metadata: { name: 'amber-system' } } });
  }, 20 * 60_000); // the first image build, or another test file holding the node
  afterAll(async () => {
    await node?.stop();
    await cluster?.stop();
  }, 120_000);

  it('runs `amber --version` as a pod', async () => {
    const pod = await pods.run('amber-system', 'version', amber.ref, ['amber', '--version'], {
      restartPolicy: 'Never',
      waitFor: 'Done',
    });
    expect(pod.status?.phase).toBe('Succeeded');
    expect(await pods.logs('amber-system', 'version')).toBe(`${version}\n`);
  });

  it('runs `amber collect --help` as a pod, as the image user, not root', async () => {
    const pod = await pods.run(
      'amber-system',
      'collect-help',
      amber.ref,
      ['sh', '-c', 'id -u; amber collect --help'],
      { restartPolicy: 'Never', waitFor: 'Done' },
    );
    expect(pod.status?.phase).toBe('Succeeded');
    const log = await pods.logs('amber-system', 'collect-help');
    expect(log.split('\n')[0]).toBe('65532');
    expect(log).toContain('Usage: amber collect');
  });

  it('fails a pod on an unknown subcommand (the image does not answer everything with success)', async () => {
    const pod = await pods.run('amber-system', 'bogus', amber.ref, ['amber', 'no-such-command'], {
      restartPolicy: 'Never',
      waitFor: 'Done',
    });
    expect(pod.status?.phase).toBe('Failed');
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).not.toBe(0);
  });
});
