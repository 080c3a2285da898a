import { describe, expect, it } from 'vitest';
import { Collection } from '../../../src/api/common.js';
import { CollectionConfig } from '../../../src/collection/config.js';
import { collectionJob, type CollectionJobInput } from '../../../src/collection/job.js';
import { OperatorConfig, collectionConfig, configFromEnv } from '../../../src/operator/config.js';

/** AMBER_COLLECTOR_IMAGE_PULL_SECRETS reaches the collection Job's pod (a private image elsewhere). */
function jobFromEnv(env: NodeJS.ProcessEnv) {
  const cfg = CollectionConfig.parse(collectionConfig(OperatorConfig.parse(configFromEnv(env))));
  const input: CollectionJobInput = {
    kase: { name: 'case-web', uid: 'uid-1' },
    namespace: cfg.namespace,
    pod: { namespace: 'shop', name: 'web-abc', node: 'node-a' },
    target: { name: 'main', id: 'a'.repeat(64), runtime: 'containerd' },
    collection: Collection.parse({}),
    store: {
      type: 's3',
      bucket: 'evidence',
      prefix: 'amber/',
      region: 'us-east-1',
      forcePathStyle: false,
      retention: { mode: 'COMPLIANCE', period: '1d', legalHold: false },
    },
    image: cfg.image,
    imagePullSecrets: cfg.imagePullSecrets,
    command: cfg.command,
    collectorDeadline: cfg.collectorDeadline,
  };
  return collectionJob(input).spec!.template.spec!;
}

describe('collection Job image pull secrets', () => {
  it('come from AMBER_COLLECTOR_IMAGE_PULL_SECRETS, in order', () => {
    const pod = jobFromEnv({ AMBER_COLLECTOR_IMAGE_PULL_SECRETS: 'regcred, mirror-cred' });
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }, { name: 'mirror-cred' }]);
  });

  it('are absent when none is set, or set to none', () => {
    expect(jobFromEnv({}).imagePullSecrets).toBeUndefined();
    expect(jobFromEnv({ AMBER_COLLECTOR_IMAGE_PULL_SECRETS: 'none' }).imagePullSecrets).toBeUndefined();
  });
});
