import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BatchV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { containerPrefix } from '../../../src/collection/decide.js';
import { JobCredentialsMinter } from '../../../src/collection/credentials.js';
import { collectionJobName } from '../../../src/collection/job.js';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { MANIFEST_NAME, buildStatement, encodeManifest } from '../../../src/evidence/manifest.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { startCaseController } from '../../testenv/operator.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';
import { createSigningKeySecret, markRunning, objectVersions } from './helpers.js';

/**
 * Job mode against a real API server and kube-controller-manager: the operator's Job is
 * validated and defaulted by the API server, the Job controller makes its Pod, and kwok (the
 * node is a kwok fake) runs it to Succeeded without running anything, so the collector's report
 * never appears: the case must say so, and still seal what the operator itself gathered.
 */
describe('job collection on a kwok node', () => {
  let cluster: Cluster;
  let minio: Minio;
  let w: Workloads;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  let signing: { privateKeyPem: string; publicKeyPem: string };
  let opKc: Awaited<ReturnType<typeof operatorKubeConfig>>;
  const node = 'node-k';
  const containerId = randomBytes(32).toString('hex');

  beforeAll(async () => {
    [cluster, minio] = await Promise.all([
      startCluster({ controllerManager: true, kwok: true }),
      startMinio(),
    ]);
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    await w.node(node);
    await w.namespace('shop');
    opKc = await operatorKubeConfig(cluster);
    signing = await createSigningKeySecret(admin);
    operator = await startCaseController(opKc, {
      collection: {
        ...collectionConfig(),
        // These tests are about what is sealed; the wait for the credentials' expiry (at least
        // STS's 900 s) has its own test at the end, which moves the expiry instead of waiting.
        jobCredentials: { sealAfterExpiry: false },
      },
    });
  });
  const collectionConfig = () => ({
    mode: 'job' as const,
    image: 'amber:test',
    pollMs: 1_000,
    evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
  });
  afterAll(async () => {
    await operator?.stop();
    await minio?.stop();
    await cluster?.stop();
  });

  it('creates the Job on the suspect node, then seals and says what is missing; deletes the pod only after', async () => {
    const [pod] = await w.replicaSet('shop', 'web', node, 1);
    const podName = pod!.metadata!.name!;
    await markRunning(cluster.kubeConfig(), 'shop', podName, `containerd://${containerId}`);
    await w.createCase('case-job', {
      target: { namespace: 'shop', pod: podName },
      reason: 'test: job mode',
      containment: { deletePodAfterSeal: true },
      collection: { timeoutSeconds: 300 },
      evidence: {
        store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint, prefix: 'amber/' },
        retention: { mode: 'GOVERNANCE', days: 1 },
      },
    });

    // kwok runs the Job's pod to Succeeded without running the collector: nothing of the
    // container reached the store, so the case is sealed and says it is incomplete.
    const kase = await w.waitForPhase('case-job', 'SealedIncomplete', 90_000);
    const batch = cluster.kubeConfig().makeApiClient(BatchV1Api);
    const job = await batch.readNamespacedJob({
      namespace: OPERATOR_NAMESPACE,
      name: collectionJobName({ name: 'case-job', uid: kase.metadata.uid }, 'main'),
    });
    const spec = job.spec!.template.spec!;
    expect(spec.nodeName).toBe(node);
    expect(spec.hostPID).toBe(true);
    expect(spec.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(spec.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--container-id',
        containerId,
        '--runtime',
        'containerd',
        '--node',
        node,
        '--bucket',
        minio.bucket,
      ]),
    );
    expect(spec.containers[0]!.volumeMounts).toEqual([
      expect.objectContaining({ mountPath: '/host', readOnly: true }),
    ]);
    expect(job.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'ForensicCase',
      uid: kase.metadata.uid,
    });
    expect(job.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')).toBe(true);
    // Created suspended, resumed once its own credentials Secret existed; nothing else in its env.
    expect(job.spec?.suspend).toBe(false);
    expect(spec.containers[0]!.envFrom).toEqual([{ secretRef: { name: job.metadata!.name } }]);
    const secret = await w.core.readNamespacedSecret({
      namespace: OPERATOR_NAMESPACE,
      name: job.metadata!.name!,
    });
    expect(secret.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Job', name: job.metadata!.name, uid: job.metadata!.uid }),
    ]);
    expect(Object.keys(secret.data ?? {}).sort()).toEqual([
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'AWS_SESSION_TOKEN',
    ]);
    expect(Buffer.from(secret.data!.AWS_ACCESS_KEY_ID!, 'base64').toString()).not.toBe(minio.accessKey);
    const jobPods = await w.core.listNamespacedPod({
      namespace: OPERATOR_NAMESPACE,
      labelSelector: `batch.kubernetes.io/job-name=${job.metadata!.name}`,
    });
    expect(jobPods.items.map((p) => p.spec?.nodeName)).toEqual([node]);

    const status = kase.status as typeof kase.status & {
      gaps?: { what: string; reason: string }[];
      findings?: unknown[];
    };
    expect(status?.gaps?.map((g) => g.what)).toEqual(['container main']);
    expect(status?.findings ?? []).toEqual([]);
    const collected = kase.status?.conditions?.find((c) => c.type === 'EvidenceCollected');
    expect(collected).toMatchObject({ status: 'False', reason: 'Incomplete' });
    expect(collected?.message).toMatch(
      /0 of 1 containers collected; missing container main: Job .* succeeded; its pod left no termination message; and the store holds no report.json/,
    );
    expect((kase.status?.timeline ?? []).find((e) => e.action === 'CollectEvidence')?.outcome).toBe('Failed');

    // What the operator gathered itself is sealed, the detached pod's former owner included.
    const objects = await objectVersions(minio.client(), minio.bucket, 'amber/case-job/');
    for (const n of [
      'orchestrator/pod.yaml',
      'orchestrator/owner.yaml',
      'orchestrator/node.yaml',
      MANIFEST_NAME,
    ])
      expect(objects.some((o) => o.startsWith(`amber/case-job/${n}@`))).toBe(true);

    const deleted = await waitFor(
      'pod deleted after seal',
      () => w.getCase('case-job'),
      (c) => (c.status?.timeline ?? []).some((e) => e.action === 'DeletePod'),
    );
    expect(deleted.status?.timeline?.find((e) => e.action === 'DeletePod')?.outcome).toBe('Succeeded');
    await waitFor(
      'pod gone',
      () => w.core.listNamespacedPod({ namespace: 'shop', fieldSelector: `metadata.name=${podName}` }),
      (l) => l.items.length === 0 || l.items[0]!.metadata?.deletionTimestamp !== undefined,
    );
  });

  const rootConnection = () => ({
    endpoint: minio.endpoint,
    region: minio.region,
    forcePathStyle: true,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
  });
  const caseSpec = (podName: string) => ({
    target: { namespace: 'shop', pod: podName },
    reason: 'test: custody',
    containment: { deletePodAfterSeal: true },
    collection: { timeoutSeconds: 300 },
    evidence: {
      store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint, prefix: 'amber/' },
      retention: { mode: 'GOVERNANCE', days: 1 },
    },
  });
  /** A running suspect pod of its own, with a container ID of its own. */
  const suspect = async (app: string) => {
    const [pod] = await w.replicaSet('shop', app, node, 1);
    const podName = pod!.metadata!.name!;
    const id = randomBytes(32).toString('hex');
    await markRunning(cluster.kubeConfig(), 'shop', podName, `containerd://${id}`);
    return { podName, id };
  };
  const plant = (key: string, body: string) =>
    minio.client().send(
      new PutObjectCommand({
        Bucket: minio.bucket,
        Key: key,
        Body: body,
        ObjectLockMode: 'GOVERNANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
      }),
    );
  const reconciles = async () =>
    (await (operator.registry.getSingleMetric('amber_reconcile_total') as Counter).get()).values.reduce(
      (n, v) => n + v.value,
      0,
    );
  /** Another full pass over the case, so that a decision a later pass would make has been made. */
  const anotherPass = async (name: string) => {
    const seen = await reconciles();
    await w.custom.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: 'forensiccases',
        name,
        body: { metadata: { annotations: { poke: String(seen) } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitFor('another reconcile pass', reconciles, (n) => n > seen);
  };
  const refusal = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    }
    throw new Error('the request was allowed');
  };

  it("the Job's credentials, as root on the node takes them from its Secret, are refused outside their prefix; a write after the seal fails verify", async () => {
    const kase = await w.getCase('case-job');
    const name = collectionJobName({ name: 'case-job', uid: kase.metadata.uid }, 'main');
    const secret = await w.core.readNamespacedSecret({ namespace: OPERATOR_NAMESPACE, name });
    const env = (k: string) => Buffer.from(secret.data![k]!, 'base64').toString();
    const stolen = new S3Client({
      ...rootConnection(),
      maxAttempts: 1,
      credentials: {
        accessKeyId: env('AWS_ACCESS_KEY_ID'),
        secretAccessKey: env('AWS_SECRET_ACCESS_KEY'),
        sessionToken: env('AWS_SESSION_TOKEN'),
      },
    });
    try {
      const put = (Key: string) =>
        stolen.send(new PutObjectCommand({ Bucket: minio.bucket, Key, Body: 'x' }));
      for (const attempt of [
        () => stolen.send(new ListObjectsV2Command({ Bucket: minio.bucket })),
        () => stolen.send(new ListObjectsV2Command({ Bucket: minio.bucket, Prefix: 'amber/case-job/' })),
        () =>
          stolen.send(new GetObjectCommand({ Bucket: minio.bucket, Key: `amber/case-job/${MANIFEST_NAME}` })),
        () =>
          stolen.send(
            new GetObjectCommand({ Bucket: minio.bucket, Key: 'amber/case-job/orchestrator/pod.yaml' }),
          ),
        () => put(`amber/case-job/${MANIFEST_NAME}`),
        () => put('amber/case-job/orchestrator/pod.yaml'),
        () => put(`amber/case-other/${containerPrefix(containerId)}/x`),
      ])
        expect(await refusal(attempt())).toBe(403);

      // Its own prefix stays writable until the credentials expire: a late write is caught.
      await stolen.send(
        new PutObjectCommand({
          Bucket: minio.bucket,
          Key: `amber/case-job/${containerPrefix(containerId)}/late.bin`,
          Body: 'written after the seal',
          ObjectLockMode: 'GOVERNANCE',
          ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
        }),
      );
    } finally {
      stolen.destroy();
    }
    const report = await verifyCase(`s3://${minio.bucket}/amber/case-job`, {
      publicKeyPem: signing.publicKeyPem,
      s3: rootConnection(),
    });
    expect(report.ok).toBe(false);
    expect(report.artifacts.find((a) => a.name.endsWith('/late.bin'))?.status).toBe('unexpected');
  });

  const forgedStatement = (caseId: string) =>
    buildStatement({
      artifacts: [],
      caseInfo: { id: caseId },
      timeline: [],
      location: `s3://${minio.bucket}/amber/${caseId}/`,
      sealedAt: new Date(),
    });
  it.each<[string, string, (caseId: string) => Promise<string>]>([
    [
      'without a valid signature',
      'ForeignManifest',
      async (caseId) => {
        const env = JSON.parse(
          encodeManifest(forgedStatement(caseId), loadSigningKey(signing.privateKeyPem)),
        ) as { signatures: { keyid: string; sig: string }[] };
        env.signatures = [{ keyid: '', sig: Buffer.from('forged').toString('base64') }];
        return `${JSON.stringify(env)}\n`;
      },
    ],
    [
      'signed by another key',
      'ForeignManifest',
      async (caseId) =>
        encodeManifest(
          forgedStatement(caseId),
          loadSigningKey(generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' })),
        ),
    ],
    [
      'signed by the operator, replayed from another case',
      'MisboundManifest',
      async () => {
        const res = await minio
          .client()
          .send(new GetObjectCommand({ Bucket: minio.bucket, Key: `amber/case-job/${MANIFEST_NAME}` }));
        return res.Body!.transformToString();
      },
    ],
  ])(
    'a manifest planted before the seal, %s: EvidenceTampered, never Sealed, the pod kept',
    async (_what, reason, forge) => {
      const caseId = `case-forged-${reason.toLowerCase()}-${randomBytes(3).toString('hex')}`;
      const { podName } = await suspect(caseId);
      const planted = await forge(caseId);
      await plant(`amber/${caseId}/${MANIFEST_NAME}`, planted);
      await w.createCase(caseId, caseSpec(podName));

      const kase = await w.waitForPhase(caseId, 'Tampered', 180_000);
      const conditions = kase.status?.conditions ?? [];
      expect(conditions.find((c) => c.type === 'EvidenceTampered')).toMatchObject({ status: 'True', reason });
      expect(conditions.find((c) => c.type === 'EvidenceSealed')).toMatchObject({
        status: 'False',
        reason: 'EvidenceTampered',
      });
      await anotherPass(caseId);
      const after = await w.getCase(caseId);
      expect(after.status?.phase).toBe('Tampered');
      expect((after.status?.timeline ?? []).some((e) => e.action === 'DeletePod')).toBe(false);
      const pod = await w.core.readNamespacedPod({ namespace: 'shop', name: podName });
      expect(pod.metadata?.deletionTimestamp).toBeUndefined();
      // The planted manifest is the only one: the operator never wrote over it.
      expect(
        await objectVersions(minio.client(), minio.bucket, `amber/${caseId}/${MANIFEST_NAME}`),
      ).toHaveLength(1);
    },
    240_000,
  );

  it('objects planted under the case before the seal are findings: recorded, never signed', async () => {
    const caseId = 'case-planted';
    const { podName, id } = await suspect(caseId);
    await plant(`amber/${caseId}/notes.txt`, 'nothing to see here');
    await plant(`amber/${caseId}/${containerPrefix(id)}/implant.bin`, 'planted evidence');
    await w.createCase(caseId, caseSpec(podName));

    const kase = await w.waitForPhase(caseId, 'SealedIncomplete', 180_000);
    const status = kase.status as typeof kase.status & { findings?: { what: string; reason: string }[] };
    expect(status?.findings?.map((f) => f.what).sort()).toEqual(
      [`${containerPrefix(id)}/implant.bin`, 'notes.txt'].sort(),
    );
    const report = await verifyCase(`s3://${minio.bucket}/amber/${caseId}`, {
      publicKeyPem: signing.publicKeyPem,
      s3: rootConnection(),
    });
    expect(report.manifest.findings?.map((f) => f.what).sort()).toEqual(
      [`${containerPrefix(id)}/implant.bin`, 'notes.txt'].sort(),
    );
    expect(
      report.artifacts
        .filter((a) => a.status === 'finding')
        .map((a) => a.name)
        .sort(),
    ).toEqual([`${containerPrefix(id)}/implant.bin`, 'notes.txt'].sort());
    // Signed: only what the operator gathered itself.
    expect(
      report.artifacts.filter((a) => a.status === 'ok').every((a) => a.name.startsWith('orchestrator/')),
    ).toBe(true);
    expect(report.ok).toBe(true);
    expect(report.manifest.complete).toBe(false);
  }, 240_000);

  /** The Job's credentials as root on the node takes them: from the Secret its pod mounts. */
  const stolenCredentials = async (caseId: string, container = 'main') => {
    const kase = await w.getCase(caseId);
    const name = collectionJobName({ name: caseId, uid: kase.metadata.uid }, container);
    const secret = await waitFor(
      'the Job credentials Secret',
      () => w.core.readNamespacedSecret({ namespace: OPERATOR_NAMESPACE, name }).catch(() => undefined),
      (x) => x !== undefined,
    );
    const env = (k: string) => Buffer.from(secret!.data![k]!, 'base64').toString();
    return new S3Client({
      ...rootConnection(),
      maxAttempts: 1,
      credentials: {
        accessKeyId: env('AWS_ACCESS_KEY_ID'),
        secretAccessKey: env('AWS_SECRET_ACCESS_KEY'),
        sessionToken: env('AWS_SESSION_TOKEN'),
      },
    });
  };
  const lockedPut = (client: S3Client, Key: string, Body: string) =>
    client.send(
      new PutObjectCommand({
        Bucket: minio.bucket,
        Key,
        Body,
        ObjectLockMode: 'GOVERNANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
      }),
    );

  it('what the node writes with its credentials to break the seal (a bad key, a record that is not JSON, a key written twice) ends as findings: sealed, and verify runs to the end', async () => {
    const caseId = 'case-unlistable';
    const { podName, id } = await suspect(caseId);
    // Credentials minted as the operator mints them for this container's Job, used before the
    // case starts so that every write lands before the seal whatever the timing.
    const minter = new JobCredentialsMinter();
    const creds = await minter.mint(
      {
        endpoint: minio.endpoint,
        region: minio.region,
        roleArn: 'arn:aws:iam::000000000000:role/amber-collector',
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      },
      {
        bucket: minio.bucket,
        prefix: 'amber/',
        caseId,
        containerPrefix: containerPrefix(id),
        legalHold: false,
        lockMode: 'GOVERNANCE',
        retentionDays: 1,
      },
      'attacker',
      900,
    );
    minter.close();
    const stolen = new S3Client({ ...rootConnection(), maxAttempts: 1, credentials: creds });
    const own = `amber/${caseId}/${containerPrefix(id)}`;
    const record = `amber/${caseId}/.amber/digests/${containerPrefix(id)}`;
    try {
      await lockedPut(stolen, `${own}/bad name {}.bin`, 'a key the name regex refuses');
      await lockedPut(stolen, `${own}/x.bin`, 'an artifact');
      await lockedPut(stolen, `${record}/x.bin.json`, '{not json');
      await lockedPut(stolen, `${own}/twice.bin`, 'first');
      await lockedPut(stolen, `${own}/twice.bin`, 'second');
      await lockedPut(stolen, `${own}/report.json`, '{"collected": [ not json');
    } finally {
      stolen.destroy();
    }
    await w.createCase(caseId, caseSpec(podName));
    const kase = await w.waitForPhase(caseId, 'SealedIncomplete', 180_000);
    const status = kase.status as typeof kase.status & { findings?: { what: string; reason: string }[] };
    const found = new Map(status?.findings?.map((f) => [f.what, f.reason]));
    expect(found.get(`${containerPrefix(id)}/bad name {}.bin`)).toMatch(/no artifact name can take/);
    expect(found.get(`.amber/digests/${containerPrefix(id)}/x.bin.json`)).toMatch(/not a digest record/);
    expect(found.get(`${containerPrefix(id)}/x.bin`)).toBeDefined();
    expect(found.get(`${containerPrefix(id)}/twice.bin`)).toMatch(/2 version/);
    // A report that is not JSON is read as no report: the container is a gap, the case goes on.
    const gaps = (kase.status as { gaps?: { what: string; reason: string }[] }).gaps ?? [];
    expect(gaps.find((g) => g.what === 'container main')?.reason).toMatch(/not a collector report: not JSON/);

    const report = await verifyCase(`s3://${minio.bucket}/amber/${caseId}`, {
      publicKeyPem: signing.publicKeyPem,
      s3: rootConnection(),
    });
    expect(report.manifest.signatureValid).toBe(true);
    expect(report.ok).toBe(true);
    const statusOf = new Map(report.artifacts.map((a) => [a.name, a.status]));
    for (const name of [
      `${containerPrefix(id)}/bad name {}.bin`,
      `.amber/digests/${containerPrefix(id)}/x.bin.json`,
      `${containerPrefix(id)}/x.bin`,
      `${containerPrefix(id)}/twice.bin`,
    ])
      expect(statusOf.get(name)).toBe('finding');

    // Written after the seal (the wait for expiry is off here): verify still runs to the end, and fails.
    await plant(`${own}/late name {}.bin`, 'after the seal');
    const after = await verifyCase(`s3://${minio.bucket}/amber/${caseId}`, {
      publicKeyPem: signing.publicKeyPem,
      s3: rootConnection(),
    });
    expect(after.ok).toBe(false);
    expect(after.artifacts.find((a) => a.name === `${containerPrefix(id)}/late name {}.bin`)?.status).toBe(
      'unexpected',
    );
  }, 240_000);

  describe('with the seal waiting for the credentials to expire (the default)', () => {
    beforeAll(async () => {
      await operator.stop();
      operator = await startCaseController(opKc, { collection: collectionConfig() });
    });

    it('signs nothing while the Job credentials can write; once they expire, what the node wrote meanwhile is a finding', async () => {
      const caseId = 'case-wait';
      const { podName, id } = await suspect(caseId);
      await w.createCase(caseId, caseSpec(podName));
      const waiting = await waitFor(
        'the seal waiting for the credentials',
        () => w.getCase(caseId),
        (c) =>
          (c.status?.conditions ?? []).some(
            (x) => x.type === 'EvidenceSealed' && x.reason === 'WaitingForCredentialExpiry',
          ),
        180_000,
      );
      const sealedCondition = waiting.status!.conditions!.find((x) => x.type === 'EvidenceSealed')!;
      expect(sealedCondition.status).toBe('Unknown');
      expect(waiting.status?.phase).toBe('Collecting');
      const jobs = cluster.kubeConfig().makeApiClient(BatchV1Api);
      const jobName = collectionJobName({ name: caseId, uid: waiting.metadata.uid }, 'main');
      const job = await jobs.readNamespacedJob({ namespace: OPERATOR_NAMESPACE, name: jobName });
      const expiresAt = job.metadata!.annotations!['amber.io/credentials-expire-at']!;
      expect(sealedCondition.message).toContain(expiresAt);
      // The shortest lifetime STS grants, 900 s (timeoutSeconds 300 + 60 is less), from the Job's start.
      const lifetime = Date.parse(expiresAt) - Date.parse(String(job.metadata!.creationTimestamp));
      expect(lifetime).toBeGreaterThan(880_000);
      expect(lifetime).toBeLessThanOrEqual(960_000);
      const manifestKey = `amber/${caseId}/${MANIFEST_NAME}`;
      expect(await objectVersions(minio.client(), minio.bucket, manifestKey)).toEqual([]);

      // Meanwhile root on the node rewrites under the Job's prefix with its credentials.
      const stolen = await stolenCredentials(caseId);
      const own = `amber/${caseId}/${containerPrefix(id)}`;
      try {
        await lockedPut(stolen, `${own}/report.json`, '{"collected":[],"failed":[]}');
        await lockedPut(stolen, `${own}/report.json`, '{"collected":[],"failed":[]}');
      } finally {
        stolen.destroy();
      }
      await anotherPass(caseId);
      expect(await objectVersions(minio.client(), minio.bucket, manifestKey)).toEqual([]);

      // The clock passing the expiry, without waiting 15 minutes: the expiry is moved to the past.
      await jobs.patchNamespacedJob(
        {
          namespace: OPERATOR_NAMESPACE,
          name: jobName,
          body: {
            metadata: {
              annotations: { 'amber.io/credentials-expire-at': new Date(Date.now() - 1000).toISOString() },
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      await anotherPass(caseId);
      const kase = await w.waitForPhase(caseId, 'SealedIncomplete', 180_000);
      const status = kase.status as typeof kase.status & {
        findings?: { what: string; reason: string }[];
        gaps?: { what: string; reason: string }[];
      };
      expect(status?.findings?.find((f) => f.what === `${containerPrefix(id)}/report.json`)?.reason).toMatch(
        /2 version/,
      );
      expect(status?.gaps?.find((g) => g.what === 'container main')?.reason).toMatch(
        /touched after it was stored/,
      );
      const report = await verifyCase(`s3://${minio.bucket}/amber/${caseId}`, {
        publicKeyPem: signing.publicKeyPem,
        s3: rootConnection(),
      });
      expect(report.ok).toBe(true);
      expect(report.artifacts.find((a) => a.name === `${containerPrefix(id)}/report.json`)?.status).toBe(
        'finding',
      );
    }, 300_000);
  });
});
