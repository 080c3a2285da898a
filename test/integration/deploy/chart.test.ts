import type { KubernetesObject } from '@kubernetes/client-node';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { allCrds } from '../../../src/api/crds.js';
import { cacheDir, binary, versions } from '../../testenv/binaries.js';
import { kubeVersion, startCluster, type Cluster } from '../../testenv/kube.js';
import { RawApi } from '../../testenv/raw-api.js';

/**
 * The Helm chart renders what deploy/ holds plus the CRDs of crds/: with values equal to
 * deploy/'s settings, every object has the same kind, name, spec, rules and subjects (labels
 * aside), and the API server accepts each one. With every option on, the optional objects
 * (ServiceMonitor, PrometheusRule, dashboard) are accepted too, and values.schema.json refuses
 * misspelt values. helm is built by scripts/testenv-build.sh (AMBER_HELM overrides it); kubectl
 * comes with the kubelet build.
 */
const root = join(import.meta.dirname, '..', '..', '..');
const chart = join(root, 'charts', 'amber');
const helm = process.env.AMBER_HELM ?? binary('helm');
const kubectlPath = join(cacheDir, `kubelet-${versions.kube}`, 'kubectl');

function parseAll(text: string): KubernetesObject[] {
  return YAML.parseAllDocuments(text)
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);
}

const id = (o: KubernetesObject) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

function template(namespace: string, args: string[]): KubernetesObject[] {
  return parseAll(
    execFileSync(
      helm,
      [
        'template',
        'amber',
        chart,
        '--namespace',
        namespace,
        '--kube-version',
        kubeVersion.replace(/^v/, ''),
        ...args,
      ],
      { encoding: 'utf8' },
    ),
  );
}

/** Every optional part on, and values a real install sets (TLS for the intake, a private registry). */
const EVERYTHING = [
  '--set',
  's3.bucket=amber-evidence,s3.collectorRoleArn=arn:aws:iam::123456789012:role/amber-collector',
  '--set',
  'metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.release=kube-prometheus-stack',
  '--set',
  'metrics.prometheusRule.enabled=true,metrics.prometheusRule.labels.release=kube-prometheus-stack',
  '--set',
  'metrics.prometheusRule.alertLabels.team=security',
  '--set',
  'metrics.grafanaDashboard.enabled=true',
  '--set',
  'imagePullSecrets[0].name=regcred',
  '--set',
  'priorityClassName=amber-critical',
  '--set',
  'podSecurityContext.runAsUser=null,podSecurityContext.runAsGroup=null,podSecurityContext.fsGroup=null',
  '--set',
  'wal.persistence.enabled=true',
  '--set-json',
  'extraEnv=[{"name":"AMBER_INTAKE_TLS_CERT","value":"/etc/amber/intake-tls/tls.crt"},{"name":"AMBER_INTAKE_TLS_KEY","value":"/etc/amber/intake-tls/tls.key"}]',
  '--set-json',
  'extraVolumes=[{"name":"intake-tls","secret":{"secretName":"amber-intake-tls"}}]',
  '--set-json',
  'extraVolumeMounts=[{"name":"intake-tls","mountPath":"/etc/amber/intake-tls","readOnly":true}]',
];

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

type Pod = {
  priorityClassName?: string;
  imagePullSecrets?: { name: string }[];
  securityContext?: Record<string, unknown>;
  volumes: { name: string }[];
  containers: {
    image: string;
    env: { name: string; value?: string }[];
    volumeMounts: { name: string; mountPath: string }[];
  }[];
};
const podOf = (objects: KubernetesObject[]) =>
  (objects.find((o) => o.kind === 'Deployment') as KubernetesObject & { spec: { template: { spec: Pod } } })
    .spec.template.spec;

describe('charts/amber (helm template)', () => {
  let cluster: Cluster;
  let rendered: KubernetesObject[];
  let api: RawApi;

  beforeAll(async () => {
    rendered = template('amber-system', ['--set', 's3.bucket=amber-evidence']);
    cluster = await startCluster();
    api = new RawApi(cluster.kubeConfig());
  });
  afterAll(async () => cluster?.stop());

  it('passes helm lint --strict with the defaults and with every option on', () => {
    for (const args of [[], EVERYTHING]) {
      const lint = spawnSync(
        helm,
        ['lint', '--strict', chart, '--kube-version', kubeVersion.replace(/^v/, ''), ...args],
        {
          encoding: 'utf8',
        },
      );
      expect(lint.stdout + lint.stderr, args.join(' ')).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(lint.status).toBe(0);
    }
  });

  it('renders the objects of deploy/ (the namespace aside) with the same specs and rules', () => {
    const deploy = readdirSync(join(root, 'deploy'))
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAll(readFileSync(join(root, 'deploy', f), 'utf8')))
      // The chart installs into a namespace made beforehand, labelled for Pod Security.
      .filter((o) => o.kind !== 'Namespace');
    const objects = rendered.filter((o) => o.kind !== 'CustomResourceDefinition');
    expect(objects.map(id).sort()).toEqual(deploy.map(id).sort());
    for (const o of deploy) {
      expect(essence(objects.find((r) => id(r) === id(o))!), id(o)).toEqual(essence(o));
    }
  });

  it('renders the CRDs of crds/, kept on helm uninstall', () => {
    const crds = rendered.filter((o) => o.kind === 'CustomResourceDefinition');
    const files = readdirSync(join(root, 'crds')).map(
      (f) => YAML.parse(readFileSync(join(root, 'crds', f), 'utf8')) as KubernetesObject & { spec: unknown },
    );
    expect(crds.map(id).sort()).toEqual(files.map(id).sort());
    expect(crds.map(id).sort()).toEqual(
      Object.values(allCrds())
        .map((c) => id(c as KubernetesObject))
        .sort(),
    );
    for (const file of files) {
      const crd = crds.find((c) => id(c) === id(file)) as KubernetesObject & { spec: unknown };
      // Through Helm's fromYaml/toYaml: numbers, descriptions and CEL rules arrive unchanged.
      expect(crd.spec, id(file)).toEqual(file.spec);
      expect(crd.metadata?.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    }
  });

  it('renders objects the API server accepts as they are, its CRDs included', async () => {
    const [namespace] = parseAll(readFileSync(join(root, 'deploy', '00-namespace.yaml'), 'utf8'));
    await api.apply(namespace!);
    for (const o of rendered) await api.apply(o);
    await waitEstablished(['forensiccases.forensics.amber.io', 'responsepolicies.forensics.amber.io']);
  });

  it('follows its values: protected namespaces, the signing key Secret, no PDB', () => {
    const objects = template('forensics', [
      '--set',
      'protectedNamespaces={payments,vault}',
      '--set',
      'signingKeySecret=case-signer',
      '--set',
      'podDisruptionBudget.enabled=false',
      '--set',
      'image.repository=registry.example.com/amber,image.tag=1.2.3',
    ]);
    expect(objects.some((o) => o.kind === 'PodDisruptionBudget')).toBe(false);
    const [container] = podOf(objects).containers;
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

  describe('with every option on', () => {
    let objects: KubernetesObject[];
    beforeAll(() => {
      objects = template('amber-system', EVERYTHING);
    });

    it('passes the pull secret, TLS, priority and security context values to the operator, and the pull secret on to the collection Jobs', () => {
      const pod = podOf(objects);
      expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(pod.priorityClassName).toBe('amber-critical');
      // No fixed user: what the platform assigns (OpenShift) is left alone.
      expect(pod.securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      const [container] = pod.containers;
      const env = Object.fromEntries(container!.env.map((e) => [e.name, e.value]));
      expect(env).toMatchObject({
        AMBER_COLLECTOR_IMAGE_PULL_SECRETS: 'regcred',
        AMBER_COLLECTOR_ROLE_ARN: 'arn:aws:iam::123456789012:role/amber-collector',
        AMBER_INTAKE_TLS_CERT: '/etc/amber/intake-tls/tls.crt',
        AMBER_INTAKE_TLS_KEY: '/etc/amber/intake-tls/tls.key',
      });
      expect(pod.volumes.map((v) => v.name)).toContain('intake-tls');
      expect(container!.volumeMounts).toContainEqual(
        expect.objectContaining({ name: 'intake-tls', mountPath: '/etc/amber/intake-tls' }),
      );
    });

    it('renders a ServiceMonitor, alerts and a dashboard with the labels their selectors need', () => {
      const monitor = objects.find((o) => o.kind === 'ServiceMonitor')!;
      expect(monitor.metadata?.labels?.release).toBe('kube-prometheus-stack');
      const rule = objects.find((o) => o.kind === 'PrometheusRule') as KubernetesObject & {
        spec: { groups: { rules: { alert: string; expr: string; labels: Record<string, string> }[] }[] };
      };
      expect(rule.metadata?.labels?.release).toBe('kube-prometheus-stack');
      const alerts = rule.spec.groups.flatMap((g) => g.rules);
      expect(alerts.map((a) => a.alert).sort()).toEqual([
        'AmberAlertsNotActedOn',
        'AmberCaseFailed',
        'AmberCaseSealedIncomplete',
        'AmberCaseTampered',
        'AmberCollectionJobFailed',
        'AmberCollectorLeftNoReport',
        'AmberIntakeLogFilling',
        'AmberIntakeQueueing',
        'AmberIntakeRefusingAlerts',
        'AmberIntakeRejectingRequests',
        'AmberNoLeader',
        'AmberOperatorDown',
      ]);
      for (const a of alerts) {
        expect(a.labels, a.alert).toMatchObject({
          team: 'security',
          severity: expect.stringMatching(/^(critical|warning)$/),
        });
        // Scoped to this release's namespace: two installs do not page for each other.
        expect(a.expr, a.alert).toContain('namespace="amber-system"');
      }
      const dashboard = objects.find(
        (o) => o.kind === 'ConfigMap' && o.metadata?.name === 'amber-dashboard',
      ) as (KubernetesObject & { data: Record<string, string> }) | undefined;
      expect(dashboard?.metadata?.labels?.grafana_dashboard).toBe('1');
      expect((JSON.parse(dashboard!.data['amber.json']!) as { uid: string }).uid).toBe('amber-operator');
    });

    it('renders objects the API server accepts (server-side dry run; ServiceMonitor and PrometheusRule against a stub of their CRDs)', async () => {
      // A stub, not the Prometheus operator's CRDs (the fixture says what it proves and what not).
      const stubs = parseAll(
        readFileSync(join(import.meta.dirname, 'fixtures', 'monitoring-crds-stub.yaml'), 'utf8'),
      );
      for (const s of stubs) await api.apply(s);
      await waitEstablished(stubs.map((s) => s.metadata!.name!));
      await api.apply({
        apiVersion: 'scheduling.k8s.io/v1',
        kind: 'PriorityClass',
        metadata: { name: 'amber-critical' },
        value: 1_000_000,
      } as KubernetesObject);
      for (const o of objects) await api.apply(o, { dryRun: true });
    });

    it('a misplaced field in a monitoring object is refused, so the dry run above can fail', async () => {
      const monitor = structuredClone(
        objects.find((o) => o.kind === 'ServiceMonitor')!,
      ) as KubernetesObject & {
        spec: { endpoints: Record<string, unknown>[] };
      };
      monitor.spec.endpoints[0] = { ...monitor.spec.endpoints[0], prot: 'metrics' };
      await expect(api.apply(monitor, { dryRun: true })).rejects.toThrow(
        /spec\.endpoints\[0\]\.prot: field not declared in schema/,
      );
    });
  });

  it('refuses misspelt or wrong values (values.schema.json) and renders nothing', () => {
    for (const [set, mentions] of [
      ['s3.buket=amber-evidence', 'buket'],
      ['metrics.serviceMonitor.enabeld=true', 'enabeld'],
      ['crds.instal=false', 'instal'],
      ['collection.mode=jobs', 'mode'],
      ['extraEnv[0].value=x', 'name'],
    ] as const) {
      const r = spawnSync(
        helm,
        ['template', 'amber', chart, '--kube-version', kubeVersion.replace(/^v/, ''), '--set', set],
        { encoding: 'utf8' },
      );
      expect(r.status, set).not.toBe(0);
      expect(r.stderr, set).toMatch(/values don't meet the specifications of the schema/);
      expect(r.stderr, set).toContain(mentions);
      expect(r.stdout, set).toBe('');
    }
  });

  it('leaves the CRDs out with crds.install=false, and uninstallable with crds.keep=false', () => {
    expect(
      template('amber-system', ['--set', 'crds.install=false']).some(
        (o) => o.kind === 'CustomResourceDefinition',
      ),
    ).toBe(false);
    const crds = template('amber-system', ['--set', 'crds.keep=false']).filter(
      (o) => o.kind === 'CustomResourceDefinition',
    );
    expect(crds).toHaveLength(2);
    for (const c of crds) expect(c.metadata?.annotations?.['helm.sh/resource-policy']).toBeUndefined();
  });

  describe('the CRDs, through kubectl', () => {
    const kubectl = (...args: string[]) =>
      execFileSync(kubectlPath, ['--kubeconfig', cluster.kubeconfigPath, ...args], { encoding: 'utf8' });
    const flat = (s: string) => s.replace(/\s+/g, ' ');

    beforeAll(() => {
      if (!existsSync(kubectlPath))
        throw new Error(`kubectl is not built (${kubectlPath}); run scripts/testenv-build.sh`);
    });

    it('kubectl explain describes every field of both kinds, at every level', () => {
      type Schema = {
        description?: string;
        type?: string;
        properties?: Record<string, Schema>;
        items?: Schema;
      };
      let explained = 0;
      // One `kubectl explain` per object in the schema; it lists each child with its description.
      const walk = (resource: string, path: string, schema: Schema) => {
        const props = schema.properties ?? schema.items?.properties;
        if (!props) return;
        const out = flat(kubectl('explain', `${resource}${path}`));
        for (const [name, child] of Object.entries(props)) {
          expect(child.description, `${resource}${path}.${name}`).toBeTruthy();
          expect(out, `${resource}${path}.${name}`).toContain(flat(child.description!));
          explained++;
          walk(resource, `${path}.${name}`, child);
        }
      };
      for (const crd of Object.values(allCrds()) as {
        spec: { names: { singular: string }; versions: { schema: { openAPIV3Schema: Schema } }[] };
      }[]) {
        const schema = crd.spec.versions[0]!.schema.openAPIV3Schema;
        expect(flat(kubectl('explain', crd.spec.names.singular))).toContain(flat(schema.description!));
        walk(crd.spec.names.singular, '', schema);
      }
      expect(explained).toBeGreaterThan(100);
    });

    it('kubectl get amber lists cases and policies; the Reason column says why a case failed', () => {
      const dir = cluster.kubeconfigPath.replace(/[^/]+$/, '');
      writeFileSync(
        join(dir, 'objects.yaml'),
        YAML.stringify({
          apiVersion: 'forensics.amber.io/v1alpha1',
          kind: 'ResponsePolicy',
          metadata: { name: 'shells' },
          spec: { match: { rules: ['Terminal shell in container'] } },
        }) +
          '---\n' +
          YAML.stringify({
            apiVersion: 'forensics.amber.io/v1alpha1',
            kind: 'ForensicCase',
            metadata: { name: 'case-web' },
            spec: { target: { namespace: 'shop', pod: 'web-1' }, reason: 'shell spawned' },
          }),
      );
      kubectl('apply', '--server-side', '-f', join(dir, 'objects.yaml'));
      // The status the operator writes for a case whose store has no bucket (phaseReasonOf).
      kubectl(
        'patch',
        'forensiccase',
        'case-web',
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({
          status: {
            phase: 'Failed',
            reason: 'NoEvidenceBucket',
            message: 'no bucket: set AMBER_S3_BUCKET',
            node: 'node-a',
          },
        }),
      );
      const all = kubectl('get', 'amber', '-o', 'name').split('\n').filter(Boolean).sort();
      expect(all).toEqual([
        'forensiccase.forensics.amber.io/case-web',
        'responsepolicy.forensics.amber.io/shells',
      ]);
      const [header, row] = kubectl('get', 'fcase', 'case-web').trim().split('\n');
      const cells = Object.fromEntries(header!.split(/\s+/).map((h, i) => [h, row!.split(/\s+/)[i]]));
      expect(cells).toMatchObject({ NAME: 'case-web', PHASE: 'Failed', REASON: 'NoEvidenceBucket' });
      expect(kubectl('get', 'fcase', 'case-web', '-o', 'wide')).toContain('no bucket: set AMBER_S3_BUCKET');
    });
  });

  describe('helm install, uninstall and install again, on a cluster of its own', () => {
    let own: Cluster;
    beforeAll(async () => {
      own = await startCluster();
    });
    afterAll(async () => own?.stop());

    it('adopts CRDs applied with kubectl (as docs/deploy.md says), keeps them and the cases on uninstall, and installs again', () => {
      const kubectl = (...args: string[]) =>
        execFileSync(kubectlPath, ['--kubeconfig', own.kubeconfigPath, ...args], { encoding: 'utf8' });
      const helmIn = (...args: string[]) =>
        execFileSync(helm, ['--kubeconfig', own.kubeconfigPath, '--namespace', 'amber-helm', ...args], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      const install = () => helmIn('install', 'amber', chart, '--set', 's3.bucket=amber-evidence');
      const crds = ['forensiccases.forensics.amber.io', 'responsepolicies.forensics.amber.io'];
      kubectl('create', 'namespace', 'amber-helm');
      // An install made with kubectl first: Helm refuses objects it does not own...
      kubectl('apply', '--server-side', '-f', join(root, 'crds'));
      kubectl('wait', '--for=condition=Established', ...crds.map((c) => `crd/${c}`));
      expect(() => install()).toThrow(/CustomResourceDefinition .* invalid ownership metadata/);
      // ...until they are handed over.
      kubectl('label', 'crd', ...crds, 'app.kubernetes.io/managed-by=Helm');
      kubectl(
        'annotate',
        'crd',
        ...crds,
        'meta.helm.sh/release-name=amber',
        'meta.helm.sh/release-namespace=amber-helm',
      );
      install();
      expect(
        kubectl('get', 'crd', crds[0]!, '-o', 'jsonpath={.metadata.annotations.helm\\.sh/resource-policy}'),
      ).toBe('keep');
      kubectl('create', '-f', join(root, 'deploy', 'examples', 'forensiccase.yaml'));
      const cases = kubectl('get', 'fcase', '-o', 'name').trim();
      expect(cases).toMatch(/^forensiccase\.forensics\.amber\.io\//);

      helmIn('uninstall', 'amber');
      expect(kubectl('get', 'deployment', '-n', 'amber-helm', '-o', 'name').trim()).toBe('');
      // Kept: the CRDs, and so every case.
      expect(
        kubectl('get', 'crd', ...crds, '-o', 'name')
          .trim()
          .split('\n'),
      ).toHaveLength(2);
      expect(kubectl('get', 'fcase', '-o', 'name').trim()).toBe(cases);

      // The kept CRDs still carry the release's annotations: a new install takes them over.
      install();
      expect(helmIn('status', 'amber')).toMatch(/STATUS: deployed/);
      expect(kubectl('get', 'fcase', '-o', 'name').trim()).toBe(cases);
    });
  });

  async function waitEstablished(names: string[]): Promise<void> {
    const kc = cluster.kubeConfig();
    const { ApiextensionsV1Api } = await import('@kubernetes/client-node');
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    for (const name of names) {
      // Established is a condition the API server sets asynchronously; polled, not slept on.
      for (let i = 0; ; i++) {
        const crd = await ext.readCustomResourceDefinition({ name });
        if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
        if (i > 200) throw new Error(`CRD ${name} not established`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
});
