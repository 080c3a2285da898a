import type { KubernetesObject } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { kubeVersion, startCluster, type Cluster } from '../../testenv/kube.js';
import { binary } from '../../testenv/binaries.js';
import { RawApi } from '../../testenv/raw-api.js';

/**
 * The Helm chart renders what deploy/ holds: with values equal to deploy/'s settings, every
 * object has the same kind, name, spec, rules and subjects (labels aside), and the API server
 * accepts each one. helm is built by scripts/testenv-build.sh (AMBER_HELM overrides it).
 */
const root = join(import.meta.dirname, '..', '..', '..');
const helm = process.env.AMBER_HELM ?? binary('helm');

function parseAll(text: string): KubernetesObject[] {
  return YAML.parseAllDocuments(text)
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);
}

const id = (o: KubernetesObject) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

/** What must agree between the chart and deploy/: everything but metadata labels and comments. */
function essence(o: KubernetesObject): unknown {
  const { metadata, ...rest } = o as KubernetesObject & Record<string, unknown>;
  const copy = structuredClone(rest) as Record<string, unknown> & {
    spec?: { template?: { metadata?: { labels?: Record<string, string> } } };
  };
  // Pod labels differ by the chart's own (instance, version, chart); the selector must not.
  if (copy.spec?.template?.metadata?.labels) {
    const { 'app.kubernetes.io/name': name, 'app.kubernetes.io/component': component } =
      copy.spec.template.metadata.labels;
    copy.spec.template.metadata.labels = {
      'app.kubernetes.io/name': name!,
      'app.kubernetes.io/component': component!,
    };
  }
  return {
    ...copy,
    name: metadata?.name,
    namespace: metadata?.namespace,
    annotations: metadata?.annotations,
  };
}

describe('charts/amber (helm template)', () => {
  let cluster: Cluster;
  let rendered: KubernetesObject[];

  beforeAll(async () => {
    const text = execFileSync(
      helm,
      [
        'template',
        'amber',
        join(root, 'charts', 'amber'),
        '--namespace',
        'amber-system',
        '--kube-version',
        kubeVersion.replace(/^v/, ''),
        '--set',
        's3.bucket=amber-evidence',
      ],
      { encoding: 'utf8' },
    );
    rendered = parseAll(text);
    cluster = await startCluster();
  });
  afterAll(async () => cluster?.stop());

  it('renders the objects of deploy/ (the namespace aside) with the same specs and rules', () => {
    const deploy = readdirSync(join(root, 'deploy'))
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAll(readFileSync(join(root, 'deploy', f), 'utf8')))
      // The chart installs into a namespace made beforehand, labelled for Pod Security.
      .filter((o) => o.kind !== 'Namespace');
    expect(rendered.map(id).sort()).toEqual(deploy.map(id).sort());
    for (const o of deploy) {
      expect(essence(rendered.find((r) => id(r) === id(o))!), id(o)).toEqual(essence(o));
    }
  });

  it('renders objects the API server accepts as they are', async () => {
    const api = new RawApi(cluster.kubeConfig());
    const [namespace] = parseAll(readFileSync(join(root, 'deploy', '00-namespace.yaml'), 'utf8'));
    await api.apply(namespace!);
    for (const o of rendered) await api.apply(o);
  });

  it('follows its values: protected namespaces, the signing key Secret, no PDB', () => {
    const text = execFileSync(
      helm,
      [
        'template',
        'amber',
        join(root, 'charts', 'amber'),
        '--namespace',
        'forensics',
        '--kube-version',
        kubeVersion.replace(/^v/, ''),
        '--set',
        'protectedNamespaces={payments,vault}',
        '--set',
        'signingKeySecret=case-signer',
        '--set',
        'podDisruptionBudget.enabled=false',
        '--set',
        'image.repository=registry.example.com/amber,image.tag=1.2.3',
      ],
      { encoding: 'utf8' },
    );
    const objects = parseAll(text);
    expect(objects.some((o) => o.kind === 'PodDisruptionBudget')).toBe(false);
    const deployment = objects.find((o) => o.kind === 'Deployment') as KubernetesObject & {
      spec: {
        template: { spec: { containers: { image: string; env: { name: string; value?: string }[] }[] } };
      };
    };
    const [container] = deployment.spec.template.spec.containers;
    const env = Object.fromEntries(container!.env.map((e) => [e.name, e.value]));
    expect(container!.image).toBe('registry.example.com/amber:1.2.3');
    expect(env).toMatchObject({
      AMBER_PROTECTED_NAMESPACES: 'payments,vault',
      AMBER_SIGNING_KEY_SECRET: 'case-signer',
      AMBER_COLLECTOR_IMAGE: 'registry.example.com/amber:1.2.3',
    });
    const collectionRole = objects.find(
      (o) => o.kind === 'Role' && o.metadata?.name === 'amber-operator-collection',
    ) as KubernetesObject & {
      rules: { resources: string[]; resourceNames?: string[]; verbs: string[] }[];
    };
    expect(collectionRole.metadata?.namespace).toBe('forensics');
    // Reading a Secret is by name only: the signing key the values name, nothing else.
    const secretReads = collectionRole.rules.filter(
      (r) => r.resources.includes('secrets') && r.verbs.some((v) => v !== 'create'),
    );
    expect(secretReads).toEqual([
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['case-signer'], verbs: ['get'] },
    ]);
  });
});
