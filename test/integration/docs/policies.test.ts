import { CustomObjectsApi } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { RESPONSE_POLICY, ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import { DEFAULT_PROTECTED_NAMESPACES } from '../../../src/cases/safety.js';
import { parseFalcoBody, toAlert } from '../../../src/intake/falco.js';
import { decideMatch } from '../../../src/intake/policy.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';

/**
 * docs/policies.md promises that every example in it is applied to a real API server and
 * matched against real Falco events. Each YAML block follows a `policy-example` comment that
 * lists the events and the outcome the text claims: the winning policy's name, or the reason
 * the intake gives for not acting.
 */

interface Expectation {
  event: string;
  namespace?: string;
  pod?: string;
  fields?: Record<string, string>;
  outcome: string;
}

interface Example {
  name: string;
  manifest: { metadata: { name: string }; spec: unknown };
  expectations: Expectation[];
}

const root = join(import.meta.dirname, '..', '..', '..');
const guide = readFileSync(join(root, 'docs', 'policies.md'), 'utf8');

function examples(): Example[] {
  const out: Example[] = [];
  const re = /<!-- policy-example: (.*?) -->\n```yaml\n([\s\S]*?)```/g;
  for (const m of guide.matchAll(re)) {
    const manifest = YAML.parse(m[2]!) as Example['manifest'];
    out.push({ name: manifest.metadata.name, manifest, expectations: JSON.parse(m[1]!) as Expectation[] });
  }
  return out;
}

/** A real fixture, aimed at another pod or with fields set the way Falco would have written them. */
function event(e: Expectation): string {
  const raw = JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'falco', e.event), 'utf8')) as {
    output_fields: Record<string, unknown>;
  };
  const f = raw.output_fields;
  const audit = 'ka.target.name' in f;
  if (e.namespace) f[audit ? 'ka.target.namespace' : 'k8s.ns.name'] = e.namespace;
  if (e.pod) {
    f[audit ? 'ka.target.name' : 'k8s.pod.name'] = e.pod;
    if (audit) f['ka.target.resource'] = 'pods';
  }
  Object.assign(f, e.fields ?? {});
  return JSON.stringify(raw);
}

describe('docs/policies.md: every example applies and matches as the text says', () => {
  let cluster: Cluster;
  let custom: CustomObjectsApi;
  const all = examples();

  beforeAll(async () => {
    cluster = await startCluster();
    await installCrds(cluster.kubeConfig());
    custom = cluster.kubeConfig().makeApiClient(CustomObjectsApi);
  });
  afterAll(async () => cluster?.stop());

  it('the guide has examples, each with at least one event', () => {
    expect(all.length).toBeGreaterThanOrEqual(7);
    for (const e of all) expect(e.expectations.length, e.name).toBeGreaterThan(0);
  });

  it.each(all.map((e) => [e.name, e] as const))('%s', async (_name, example) => {
    const stored = (await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RESPONSE_POLICY.plural,
      body: example.manifest,
    })) as { spec: unknown };
    // What the intake reads: the object as the API server stored it, defaults applied.
    const spec = ResponsePolicySpec.parse(stored.spec);
    for (const expectation of example.expectations) {
      const alert = toAlert(parseFalcoBody(event(expectation)));
      const decision = decideMatch([{ name: example.name, spec }], alert, DEFAULT_PROTECTED_NAMESPACES);
      expect(decision.policy ? decision.policy.name : decision.reason, JSON.stringify(expectation)).toBe(
        expectation.outcome,
      );
    }
  });
});
