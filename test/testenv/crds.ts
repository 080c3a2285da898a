import {
  ApiextensionsV1Api,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { RawApi } from './raw-api.js';

const crdDir = join(import.meta.dirname, '..', '..', 'crds');

/** Installs the CRDs from crds/ (the files users apply) and waits until they are Established. */
export async function installCrds(kc: KubeConfig): Promise<void> {
  const files = readdirSync(crdDir).filter((f) => f.endsWith('.yaml'));
  await installCrdFiles(
    kc,
    files.map((f) => join(crdDir, f)),
  );
}

/** Installs the CRDs of these YAML files and waits until they are Established. */
export async function installCrdFiles(kc: KubeConfig, files: string[]): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const raw = new RawApi(kc);
  const names: string[] = [];
  for (const file of files) {
    // Sent as plain JSON: the typed client's models would drop `default` and `enum` (RawApi says why).
    const crd = YAML.parse(readFileSync(file, 'utf8')) as V1CustomResourceDefinition;
    await raw.apply(crd);
    names.push(crd.metadata!.name!);
  }
  for (const name of names) {
    for (let i = 0; ; i++) {
      const crd = await api.readCustomResourceDefinition({ name });
      if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (i > 100) throw new Error(`CRD ${name} not established`);
      await sleep(100);
    }
  }
}
