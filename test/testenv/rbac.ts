import {
  CoreV1Api,
  KubernetesObjectApi,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import type { Cluster } from './kube.js';

export const OPERATOR_NAMESPACE = 'amber-system';
export const OPERATOR_USER = 'system:serviceaccount:amber-system:amber-operator';

/**
 * Applies deploy/rbac.yaml as shipped and returns a client that authenticates as the
 * operator's ServiceAccount (a client certificate with its user name), so a test runs the
 * operator with exactly the rights the deployment grants: a missing right fails the test.
 */
export async function operatorKubeConfig(cluster: Cluster): Promise<KubeConfig> {
  const admin = cluster.kubeConfig();
  await admin
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: OPERATOR_NAMESPACE } } })
    .catch(ignoreExists);
  const objects = KubernetesObjectApi.makeApiClient(admin);
  const docs = YAML.parseAllDocuments(
    readFileSync(join(import.meta.dirname, '..', '..', 'deploy', 'rbac.yaml'), 'utf8'),
  );
  for (const doc of docs) {
    const obj = doc.toJS() as KubernetesObject | null;
    if (obj) await objects.create(obj).catch(ignoreExists);
  }
  return cluster.userKubeConfig(OPERATOR_USER, [
    'system:serviceaccounts',
    'system:serviceaccounts:amber-system',
  ]);
}

function ignoreExists(err: unknown): void {
  if ((err as { code?: number }).code !== 409) throw err;
}

/** The same, written to a kubeconfig file in the cluster's directory (for `amber operator`). */
export async function operatorKubeconfigFile(cluster: Cluster): Promise<string> {
  const path = join(cluster.dir, 'operator.kubeconfig');
  writeFileSync(path, (await operatorKubeConfig(cluster)).exportConfig());
  return path;
}
