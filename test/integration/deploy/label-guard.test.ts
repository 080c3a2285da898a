import {
  CoreV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { KubeClients } from '../../../src/cases/client.js';
import { NETWORK_QUARANTINE_LABEL } from '../../../src/containment/labels.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';

/**
 * deploy/admission/network-quarantine-label.yaml against the real API server (ADR 0027): only
 * Amber's ServiceAccount may put, change or remove the network-quarantine label; a user who may
 * create and patch pods (and their status) in the namespace may not, and may still change the
 * pod's other labels.
 */
const ATTACKER = 'mallory';
const policyFile = join(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'deploy',
  'admission',
  'network-quarantine-label.yaml',
);

let cluster: Cluster;
let admin: KubeConfig;
let amber: KubeClients;
let attacker: KubeClients;
let core: CoreV1Api;

const code = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (e: { code?: number }) => e.code ?? -1,
  );
const statusPatch = (kc: KubeClients, name: string, body: object) =>
  kc.core.patchNamespacedPodStatus(
    { namespace: 'shop', name, body },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
const labelsOf = async (name: string) =>
  (await core.readNamespacedPod({ namespace: 'shop', name })).metadata?.labels ?? {};
const podBody = (name: string, labels: Record<string, string>) => ({
  metadata: { name, labels },
  spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'busybox' }] },
});

beforeAll(async () => {
  cluster = await startCluster();
  admin = cluster.kubeConfig();
  core = admin.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace: 'shop',
    body: {
      metadata: { name: 'pod-editor' },
      rules: [
        { apiGroups: [''], resources: ['pods', 'pods/status'], verbs: ['get', 'create', 'patch', 'update'] },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: 'shop',
    body: {
      metadata: { name: 'pod-editor' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-editor' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: ATTACKER }],
    },
  });
  amber = new KubeClients(await operatorKubeConfig(cluster));
  attacker = new KubeClients(cluster.userKubeConfig(ATTACKER));
  const objects = KubernetesObjectApi.makeApiClient(admin);
  for (const doc of YAML.parseAllDocuments(readFileSync(policyFile, 'utf8'))) {
    const obj = doc.toJS() as KubernetesObject | null;
    if (obj) await objects.create(obj);
  }
  // The API server enforces a new policy once its informer has it: probe until it refuses.
  await core.createNamespacedPod({ namespace: 'shop', body: podBody('probe', { app: 'probe' }) });
  let attempt = 0;
  await waitFor(
    'the policy enforced',
    () =>
      code(
        attacker.patchPod('shop', 'probe', {
          metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: `probe-${attempt++}` } },
        }),
      ),
    (c) => c === 403,
  );
});

afterAll(async () => cluster?.stop());

describe('the network-quarantine label guard (ValidatingAdmissionPolicy)', () => {
  it('Amber’s ServiceAccount puts the label on and takes it off', async () => {
    await core.createNamespacedPod({ namespace: 'shop', body: podBody('web-0', { app: 'web' }) });
    await amber.patchPod('shop', 'web-0', { metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: 'case-1' } } });
    expect((await labelsOf('web-0'))[NETWORK_QUARANTINE_LABEL]).toBe('case-1');
    await amber.patchPod('shop', 'web-0', { metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: null } } });
    expect((await labelsOf('web-0'))[NETWORK_QUARANTINE_LABEL]).toBeUndefined();
  });

  it('attack: a user who may patch pods cannot isolate one (put the label on, or create a pod with it)', async () => {
    await core.createNamespacedPod({ namespace: 'shop', body: podBody('innocent', { app: 'shop' }) });
    const patch = { metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: 'anything' } } };
    expect(await code(attacker.patchPod('shop', 'innocent', patch))).toBe(403);
    expect(await code(statusPatch(attacker, 'innocent', patch))).toBe(403);
    expect(await labelsOf('innocent')).toEqual({ app: 'shop' });
    expect(
      await code(
        attacker.core.createNamespacedPod({
          namespace: 'shop',
          body: podBody('planted', { [NETWORK_QUARANTINE_LABEL]: 'x' }),
        }),
      ),
    ).toBe(403);
    // Its own pods it may still create and relabel, without the label.
    expect(
      await code(
        attacker.core.createNamespacedPod({ namespace: 'shop', body: podBody('own', { app: 'own' }) }),
      ),
    ).toBe(200);
    expect(await code(attacker.patchPod('shop', 'own', { metadata: { labels: { app: 'mine' } } }))).toBe(200);
  });

  it('attack: the same user cannot lift an isolation (remove or change the label, through the pod or its status)', async () => {
    await core.createNamespacedPod({ namespace: 'shop', body: podBody('suspect', { app: 'web' }) });
    await amber.patchPod('shop', 'suspect', {
      metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: 'case-2' } },
    });
    const remove = { metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: null } } };
    const change = { metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: 'case-3' } } };
    expect(await code(attacker.patchPod('shop', 'suspect', remove))).toBe(403);
    expect(await code(attacker.patchPod('shop', 'suspect', change))).toBe(403);
    expect(await code(statusPatch(attacker, 'suspect', remove))).toBe(403);
    // A full update (kubectl label --overwrite, kubectl edit) is checked the same way.
    const current = await attacker.core.readNamespacedPod({ namespace: 'shop', name: 'suspect' });
    delete current.metadata!.labels![NETWORK_QUARANTINE_LABEL];
    expect(
      await code(attacker.core.replaceNamespacedPod({ namespace: 'shop', name: 'suspect', body: current })),
    ).toBe(403);
    // Other labels stay the user's to change, and the isolation stays.
    expect(await code(attacker.patchPod('shop', 'suspect', { metadata: { labels: { app: 'other' } } }))).toBe(
      200,
    );
    expect(await labelsOf('suspect')).toEqual({ app: 'other', [NETWORK_QUARANTINE_LABEL]: 'case-2' });
  });

  it('a cluster admin is refused too (deleting the binding is the way to lift a quarantine by hand)', async () => {
    expect(
      await code(
        new KubeClients(admin).patchPod('shop', 'suspect', {
          metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: null } },
        }),
      ),
    ).toBe(403);
  });
});
