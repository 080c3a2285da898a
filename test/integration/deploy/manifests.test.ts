import {
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  PolicyV1Api,
  type KubernetesObject,
  type V1CustomResourceDefinition,
  type V1Deployment,
  type V1Pod,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { Collection } from '../../../src/api/common.js';
import { collectionJob } from '../../../src/collection/job.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { waitFor } from '../../testenv/wait.js';
import { ApiRefusal, RawApi } from '../../testenv/raw-api.js';

/**
 * What a user applies (crds/, deploy/, deploy/examples/) against a real kube-apiserver with
 * kube-controller-manager and kwok, sent as kubectl sends it (server-side apply, strict field
 * validation): every object is accepted and kept as written, Pod Security admits the operator
 * at `restricted` and the collection Jobs' pods only where `privileged` is enforced, and the
 * Services and the PodDisruptionBudget select the operator's pods.
 */
const root = join(import.meta.dirname, '..', '..', '..');
const NS = 'amber-system';
const OPERATOR_SELECTOR = 'app.kubernetes.io/name=amber,app.kubernetes.io/component=operator';

/** The objects of every .yaml file in a directory, in the order `kubectl apply -f dir` uses. */
function objectsIn(dir: string): { file: string; obj: KubernetesObject }[] {
  return readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((file) =>
      YAML.parseAllDocuments(readFileSync(join(root, dir, file), 'utf8'))
        .map((doc) => doc.toJS() as KubernetesObject | null)
        // A document of comments only is no object, for kubectl either.
        .filter((obj): obj is KubernetesObject => obj !== null)
        .map((obj) => ({ file: `${dir}/${file}`, obj })),
    );
}

/**
 * Paths of `sent` that the server did not keep as written (defaults it adds are fine). An empty
 * string is kept as an absent field (Go's omitempty), which is what it means to the operator.
 */
function notKept(sent: unknown, stored: unknown, path = ''): string[] {
  if (sent !== null && typeof sent === 'object') {
    if (stored === null || typeof stored !== 'object') return [path];
    return Object.entries(sent as Record<string, unknown>).flatMap(([k, v]) =>
      notKept(
        v,
        (stored as Record<string, unknown>)[k],
        Array.isArray(sent) ? `${path}[${k}]` : `${path}.${k}`,
      ),
    );
  }
  if (sent === stored || (sent === '' && stored === undefined)) return [];
  return [`${path} (sent ${JSON.stringify(sent)}, stored ${JSON.stringify(stored)})`];
}

function describeObject(o: KubernetesObject): string {
  return `${o.kind}/${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;
}

async function refusal(call: Promise<unknown>): Promise<ApiRefusal> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ApiRefusal) return err;
    throw err;
  }
  throw new Error('the API server accepted what it should have refused');
}

const pod = (namespace: string, name: string, spec: V1PodSpec): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace },
  spec,
});

describe('deploy/ and crds/ on a real API server', () => {
  let cluster: Cluster;
  let api: RawApi;
  let core: CoreV1Api;
  /** What the server stored for each object of deploy/*.yaml, by "Kind/namespace/name". */
  const stored = new Map<string, KubernetesObject>();

  /** A namespace that enforces a Pod Security level. */
  const namespaceAt = (name: string, level: 'baseline' | 'restricted') =>
    api.apply({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': level } },
    });

  beforeAll(async () => {
    cluster = await startCluster({ controllerManager: true, kwok: true });
    api = new RawApi(cluster.kubeConfig());
    core = cluster.kubeConfig().makeApiClient(CoreV1Api);
  });
  afterAll(async () => cluster?.stop());

  it('applies crds/*.yaml as generated, and the CRDs become Established', async () => {
    const crds = objectsIn('crds');
    expect(crds.map(({ obj }) => obj.metadata?.name).sort()).toEqual([
      'forensiccases.forensics.amber.io',
      'responsepolicies.forensics.amber.io',
    ]);
    for (const { file, obj } of crds) {
      expect(notKept(obj, await api.apply(obj)), file).toEqual([]);
      await waitFor(
        `${obj.metadata?.name} Established`,
        () => api.read(obj) as Promise<V1CustomResourceDefinition>,
        (crd) =>
          crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false,
      );
    }
  });

  it('applies every object of deploy/*.yaml in file order and keeps every field as written', async () => {
    const manifests = objectsIn('deploy');
    const problems: string[] = [];
    for (const { file, obj } of manifests) {
      try {
        const kept = await api.apply(obj);
        problems.push(...notKept(obj, kept).map((p) => `${file}: ${describeObject(obj)}${p}`));
        stored.set(describeObject(kept), kept);
      } catch (err) {
        problems.push(`${file}: ${describeObject(obj)} refused: ${(err as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
    expect([...stored.keys()].sort()).toEqual(
      [
        'Namespace/amber-system',
        'Deployment/amber-system/amber-operator',
        'Service/amber-system/amber-intake',
        'Service/amber-system/amber-metrics',
        'PodDisruptionBudget/amber-system/amber-operator',
        'ServiceAccount/amber-system/amber-operator',
        'ClusterRole/amber-operator',
        'ClusterRoleBinding/amber-operator',
        'Role/amber-system/amber-operator-leader-election',
        'RoleBinding/amber-system/amber-operator-leader-election',
        'Role/amber-system/amber-operator-collection',
        'RoleBinding/amber-system/amber-operator-collection',
        'ServiceAccount/amber-system/amber-checkpoint',
        'ClusterRole/amber-checkpoint',
        'ClusterRoleBinding/amber-checkpoint',
      ].sort(),
    );
    // Applying the same files again changes no spec (an upgrade with unchanged manifests does
    // not roll the operator); the generation counts spec changes, status updates aside.
    for (const { obj } of manifests) {
      const again = await api.apply(obj);
      expect(again.metadata?.generation, describeObject(obj)).toBe(
        stored.get(describeObject(again))?.metadata?.generation,
      );
    }
  });

  it('labels amber-system to enforce the privileged Pod Security level', async () => {
    const ns = await core.readNamespace({ name: NS });
    expect(ns.metadata?.labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'privileged',
      'pod-security.kubernetes.io/enforce-version': 'latest',
    });
  });

  it('admits the collection Job and its pods in amber-system, and baseline refuses the pods', async () => {
    const job = collectionJob({
      kase: { name: 'case-1', uid: '0b6f1a52-7c1e-4d7e-9a0e-4f1f3b1c2d3e' },
      namespace: NS,
      pod: { namespace: 'shop', name: 'web-1', node: 'node-a' },
      target: { name: 'web', id: 'a'.repeat(64), runtime: 'containerd' },
      collection: Collection.parse({}),
      store: {
        type: 's3',
        bucket: 'amber-evidence',
        prefix: 'amber/',
        region: 'us-east-1',
        forcePathStyle: false,
        retention: { mode: 'COMPLIANCE', period: '365d', legalHold: false },
      },
      image: 'amber:0.1.0',
      command: ['amber'],
      collectorDeadline: { flag: null, reportMarginSeconds: 60 },
    });
    // The owner (a case) does not exist: dry-run does not check owner references.
    await api.dryRunCreate(job);
    const spec = job.spec!.template.spec!;
    await api.dryRunCreate(pod(NS, 'collector', spec));

    await namespaceAt('baseline-only', 'baseline');
    const refused = await refusal(api.dryRunCreate(pod('baseline-only', 'collector', spec)));
    expect(refused.code).toBe(403);
    expect(refused.message).toMatch(
      /violates PodSecurity "baseline:latest": .*(privileged|host namespaces|hostPath)/,
    );
  });

  it('runs the operator as non-root with every capability dropped, admitted at the restricted level', async () => {
    const apps = cluster.kubeConfig().makeApiClient(AppsV1Api);
    const deployment = await apps.readNamespacedDeployment({ namespace: NS, name: 'amber-operator' });
    const spec = deployment.spec!.template.spec!;
    expect(spec.hostPID ?? false).toBe(false);
    expect(spec.hostNetwork ?? false).toBe(false);
    expect(spec.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      expect(c.securityContext?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot, c.name).toBe(true);
      expect(c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser, c.name).toBeGreaterThan(0);
      expect(c.securityContext?.capabilities?.drop, c.name).toEqual(['ALL']);
      expect(c.securityContext?.capabilities?.add ?? [], c.name).toEqual([]);
      expect(c.securityContext?.allowPrivilegeEscalation, c.name).toBe(false);
      expect(c.securityContext?.privileged ?? false, c.name).toBe(false);
      expect(c.securityContext?.readOnlyRootFilesystem, c.name).toBe(true);
    }
    // The API server's own Pod Security check, at its strictest level ...
    await namespaceAt('restricted-only', 'restricted');
    const template = (stored.get('Deployment/amber-system/amber-operator') as V1Deployment).spec!.template
      .spec!;
    await api.dryRunCreate(pod('restricted-only', 'operator', template));
    // ... which refuses the same pod with one capability kept.
    const weakened = structuredClone(template);
    weakened.containers[0]!.securityContext!.capabilities = { drop: ['ALL'], add: ['NET_RAW'] };
    const refused = await refusal(api.dryRunCreate(pod('restricted-only', 'weakened', weakened)));
    expect(refused.message).toMatch(/violates PodSecurity "restricted:latest": .*capabilities/);
  });

  it('probes /readyz and /healthz on the metrics port, and passes the ports it declares', () => {
    const deployment = stored.get('Deployment/amber-system/amber-operator') as V1Deployment;
    const [operator] = deployment.spec!.template.spec!.containers;
    const env = (name: string) => operator!.env?.find((e) => e.name === name)?.value;
    const port = (name: string) => operator!.ports!.find((p) => p.name === name)?.containerPort;
    expect(operator!.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics', scheme: 'HTTP' });
    expect(operator!.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics', scheme: 'HTTP' });
    expect(env('AMBER_METRICS_PORT')).toBe(String(port('metrics')));
    expect(env('AMBER_INTAKE_PORT')).toBe(String(port('intake')));
    expect(env('AMBER_COLLECTOR_IMAGE')).toBe(operator!.image);
  });

  it('puts both replicas behind the intake and metrics Services, and lets a drain take one of them', async () => {
    for (const node of ['node-a', 'node-b']) {
      await core.createNode({
        body: {
          metadata: {
            name: node,
            annotations: { 'kwok.x-k8s.io/node': 'fake' },
            labels: { 'kubernetes.io/hostname': node },
          },
        },
      });
    }
    const pods = await waitFor(
      'two operator pods from the Deployment',
      () => core.listNamespacedPod({ namespace: NS, labelSelector: OPERATOR_SELECTOR }),
      (l) => l.items.length === 2,
    );
    // No scheduler runs here: bind the pods as kube-scheduler would, one per node.
    await Promise.all(
      pods.items.map((p, i) =>
        core.createNamespacedPodBinding({
          namespace: NS,
          name: p.metadata!.name!,
          body: {
            metadata: { name: p.metadata!.name! },
            target: { kind: 'Node', name: i === 0 ? 'node-a' : 'node-b' },
          },
        }),
      ),
    );

    const discovery = cluster.kubeConfig().makeApiClient(DiscoveryV1Api);
    for (const [service, port] of [
      ['amber-intake', 2801],
      ['amber-metrics', 8080],
    ] as const) {
      const slices = await waitFor(
        `two ready endpoints of ${service}`,
        () =>
          discovery.listNamespacedEndpointSlice({
            namespace: NS,
            labelSelector: `kubernetes.io/service-name=${service}`,
          }),
        (l) => l.items.flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready).length === 2,
      );
      expect(slices.items.flatMap((s) => s.ports ?? []).map((p) => p.port)).toEqual([port]);
    }

    const policy = cluster.kubeConfig().makeApiClient(PolicyV1Api);
    const pdb = await waitFor(
      'the PodDisruptionBudget to count both replicas',
      () => policy.readNamespacedPodDisruptionBudget({ namespace: NS, name: 'amber-operator' }),
      (p) => p.status?.currentHealthy === 2,
    );
    expect(pdb.status).toMatchObject({
      currentHealthy: 2,
      desiredHealthy: 1,
      disruptionsAllowed: 1,
      expectedPods: 2,
    });
  });

  it('validates deploy/examples against the CRD schemas and keeps every field', async () => {
    const examples = objectsIn('deploy/examples');
    expect(examples.map(({ obj }) => obj.kind).sort()).toEqual(['ForensicCase', 'ResponsePolicy']);
    for (const { file, obj } of examples) {
      expect(notKept(obj, await api.apply(obj)), file).toEqual([]);
    }
    // The schemas are enforced: a retention mode the CRD does not list, or a field it does not
    // know, is refused.
    const kase = examples.find(({ obj }) => obj.kind === 'ForensicCase')!.obj as KubernetesObject & {
      spec: { evidence: { retention: Record<string, unknown> } };
    };
    const badMode = structuredClone(kase);
    badMode.spec.evidence.retention.mode = 'FOREVER';
    expect((await refusal(api.apply(badMode, { dryRun: true }))).message).toContain(
      'spec.evidence.retention.mode',
    );
    const unknownField = structuredClone(kase);
    unknownField.spec.evidence.retention.years = 7;
    expect((await refusal(api.apply(unknownField, { dryRun: true }))).message).toMatch(
      /spec\.evidence\.retention\.years"?: field not declared in schema|unknown field "spec\.evidence\.retention\.years"/,
    );
  });
});
