import { ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { generateKeyPairSync } from 'node:crypto';
import { OPERATOR_NAMESPACE } from '../../testenv/rbac.js';

/** An Ed25519 key pair in PEM, and the Secret the operator reads it from by default. */
export async function createSigningKeySecret(
  admin: KubeConfig,
): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  await admin.makeApiClient(CoreV1Api).createNamespacedSecret({
    namespace: OPERATOR_NAMESPACE,
    body: { metadata: { name: 'amber-signing-key' }, stringData: { 'signing-key.pem': privateKeyPem } },
  });
  return { privateKeyPem, publicKeyPem };
}

/** A pod pinned to `node`; no kubelet runs it, so the test writes its status as a kubelet would. */
export async function createPod(
  admin: KubeConfig,
  namespace: string,
  name: string,
  node: string,
  extra: Partial<V1PodSpec> = {},
): Promise<void> {
  await admin.makeApiClient(CoreV1Api).createNamespacedPod({
    namespace,
    body: {
      metadata: { name, labels: { app: name } },
      spec: { nodeName: node, containers: [{ name: 'main', image: 'example.invalid/app:1' }], ...extra },
    },
  });
}

/** Writes the pod's status as a kubelet would: Running, with the runtime's ID for container `main`. */
export async function markRunning(
  admin: KubeConfig,
  namespace: string,
  name: string,
  containerId: string,
): Promise<void> {
  const now = new Date();
  await admin.makeApiClient(CoreV1Api).patchNamespacedPodStatus(
    {
      namespace,
      name,
      body: {
        status: {
          phase: 'Running',
          conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
          containerStatuses: [
            {
              name: 'main',
              image: 'example.invalid/app:1',
              imageID: '',
              ready: true,
              restartCount: 0,
              started: true,
              containerID: containerId,
              state: { running: { startedAt: now } },
            },
          ],
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** Every object version (and delete marker) under a prefix: what "nothing new was written" counts. */
export async function objectVersions(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let markers: { KeyMarker?: string; VersionIdMarker?: string } = {};
  for (;;) {
    const page = await client.send(
      new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, ...markers }),
    );
    for (const v of page.Versions ?? []) out.push(`${v.Key}@${v.VersionId}`);
    for (const m of page.DeleteMarkers ?? []) out.push(`${m.Key}@${m.VersionId} (delete marker)`);
    if (!page.IsTruncated) break;
    markers = { KeyMarker: page.NextKeyMarker, VersionIdMarker: page.NextVersionIdMarker };
  }
  return out.sort();
}
