import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Collection } from '../../../src/api/common.js';
import {
  collectionJob,
  collectionJobName,
  collectorDeadlineSeconds,
  collectorGroups,
  type CollectionJobInput,
} from '../../../src/collection/job.js';
import { toCollectOptions, type CollectCliOptions } from '../../../src/cmd/collect.js';
import { Command } from 'commander';
import { registerCollectCommand } from '../../../src/cmd/collect.js';

const input = (over: Partial<CollectionJobInput> = {}): CollectionJobInput => ({
  kase: { name: 'case-web', uid: 'uid-1' },
  namespace: 'amber-system',
  pod: { namespace: 'shop', name: 'web-abc', node: 'node-a' },
  target: { name: 'main', id: 'a'.repeat(64), runtime: 'containerd' },
  collection: Collection.parse({ timeoutSeconds: 120 }),
  store: {
    type: 's3',
    bucket: 'evidence',
    prefix: 'amber/',
    region: 'us-east-1',
    endpoint: 'http://minio:9000',
    forcePathStyle: true,
    retention: { mode: 'GOVERNANCE', period: '30d', legalHold: false },
  },
  image: 'amber:test',
  command: ['amber'],
  collectorDeadline: { flag: '--deadline', reportMarginSeconds: 60 },
  ...over,
});

/** The Job's arguments as `amber collect` itself parses them. */
function parseCollect(args: string[]): CollectCliOptions {
  const program = new Command().exitOverride();
  let parsed: CollectCliOptions | undefined;
  registerCollectCommand(program);
  program.commands[0]!.action((o: CollectCliOptions) => {
    parsed = o;
  });
  program.parse(['node', 'amber', ...args]);
  return parsed!;
}

describe('collection Job', () => {
  const job = collectionJob(input());
  const pod = job.spec!.template.spec!;
  const container = pod.containers[0]!;

  it('runs in the operator namespace, owned by the case, pinned to the suspect node', () => {
    expect(job.metadata?.namespace).toBe('amber-system');
    expect(job.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'ForensicCase', name: 'case-web', uid: 'uid-1', controller: true }),
    ]);
    expect(pod.nodeName).toBe('node-a');
    expect(job.metadata?.labels?.['forensics.amber.io/case']).toBe('case-web');
    expect(job.spec?.template.metadata?.labels).toEqual(job.metadata?.labels);
  });

  it('tolerates every taint, for good: no tolerationSeconds that a NoExecute taint would count down', () => {
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.tolerations!.some((t) => t.effect === 'NoExecute' || t.tolerationSeconds !== undefined)).toBe(
      false,
    );
  });

  it('shares the host PID namespace and mounts the host root read-only, nothing else', () => {
    expect(pod.hostPID).toBe(true);
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.hostIPC).toBeUndefined();
    expect(pod.volumes).toEqual([{ name: 'host-root', hostPath: { path: '/', type: 'Directory' } }]);
    expect(container.volumeMounts).toEqual([
      expect.objectContaining({
        name: 'host-root',
        mountPath: '/host',
        readOnly: true,
        recursiveReadOnly: 'IfPossible',
      }),
    ]);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.securityContext).toMatchObject({ privileged: true, readOnlyRootFilesystem: true });
  });

  it('runs once, within the case timeout, and is kept for the operator to read', () => {
    expect(job.spec?.backoffLimit).toBe(0);
    expect(job.spec?.activeDeadlineSeconds).toBe(120);
    expect(job.spec?.ttlSecondsAfterFinished).toBeUndefined();
    expect(pod.restartPolicy).toBe('Never');
    expect(container.terminationMessagePath).toBe('/dev/termination-log');
    expect(container.terminationMessagePolicy).toBe('File');
  });

  it('takes S3 credentials from its own Secret, named like the Job, and starts suspended until it exists', () => {
    expect(container.envFrom).toEqual([{ secretRef: { name: job.metadata!.name! } }]);
    expect(container.env?.some((e) => /AWS_/.test(e.name))).toBe(false);
    expect(job.spec?.suspend).toBe(true);
  });

  it("passes the collector a deadline before the Job's, and threads a wedged read cannot starve", () => {
    expect(container.args!.slice(-2)).toEqual(['--deadline', '60']);
    const without = collectionJob(input({ collectorDeadline: { flag: null, reportMarginSeconds: 60 } }));
    expect(without.spec!.template.spec!.containers[0]!.args).not.toContain('--deadline');
    expect(container.env).toContainEqual({ name: 'UV_THREADPOOL_SIZE', value: '64' });
  });

  it("passes the pod's addresses whose tracked connections are cut, in terms the collector accepts", () => {
    const job = collectionJob(input({ pod: { ...input().pod, cutConnections: ['10.244.0.7', 'fd00::7'] } }));
    const args = job.spec!.template.spec!.containers[0]!.args!;
    expect(args.slice(args.indexOf('--cut-connections'), args.indexOf('--cut-connections') + 2)).toEqual([
      '--cut-connections',
      '10.244.0.7,fd00::7',
    ]);
    const parsed = parseCollect(args);
    expect(toCollectOptions(parsed).cutConnectionsOf).toEqual(['10.244.0.7', 'fd00::7']);
    // Without addresses (no network isolation, or hostNetwork): nothing is cut.
    expect(container.args).not.toContain('--cut-connections');
  });

  it.each([
    [{ archive: '/var/lib/kubelet/checkpoints/checkpoint-web-abc_shop-main-2026-11-28T14:00:00Z.tar' }],
    [{ refused: 'the kubelet answered HTTP 500: checkpointing of shop/web-abc/main failed (criu failed)' }],
  ])("passes the kubelet's answer %o in terms the collector accepts", (request) => {
    const job = collectionJob(
      input({ checkpoint: { request, checkpointsRoot: '/var/lib/kubelet/checkpoints' } }),
    );
    const opts = toCollectOptions(parseCollect(job.spec!.template.spec!.containers[0]!.args!));
    expect(opts.checkpoint).toEqual(request);
    expect(opts.checkpointsRoot).toBe('/var/lib/kubelet/checkpoints');
  });

  it('refuses both --checkpoint-archive and --checkpoint-refused (a usage error)', () => {
    const base = { containerId: 'a'.repeat(64), case: 'c', runtime: 'auto' } as CollectCliOptions;
    expect(() => toCollectOptions({ ...base, checkpointArchive: '/a', checkpointRefused: 'x' })).toThrow(
      /either --checkpoint-archive or --checkpoint-refused/,
    );
  });

  it('refuses a --cut-connections entry that is not an IP address (a usage error, nothing collected)', () => {
    const base = { containerId: 'a'.repeat(64), case: 'c', runtime: 'auto' } as CollectCliOptions;
    expect(() => toCollectOptions({ ...base, cutConnections: '10.0.0.1,-s 0/0' })).toThrow(
      /not an IP address: "-s 0\/0"/,
    );
  });

  it.each([
    [600, 60, 540],
    [120, 60, 60],
    [10, 60, 5],
    [11, 60, 6],
    [3600, 120, 3480],
  ])('Job deadline %i s, margin %i s -> collector deadline %i s', (job, margin, collector) => {
    expect(collectorDeadlineSeconds(job, margin)).toBe(collector);
  });

  it('asks `amber collect` for exactly this container, in terms its own parser accepts', () => {
    const args = container.args!;
    const parsed = parseCollect(args);
    expect(container.command).toEqual(['amber']);
    expect(parsed).toMatchObject({
      containerId: 'a'.repeat(64),
      runtime: 'containerd',
      case: 'case-web',
      pod: 'web-abc',
      namespace: 'shop',
      containerName: 'main',
      node: 'node-a',
      hostRoot: '/host',
      procRoot: '/proc',
      bucket: 'evidence',
      endpoint: 'http://minio:9000',
      pathStyle: true,
      retentionMode: 'GOVERNANCE',
      retentionPeriod: '30d',
      memory: false,
    });
    const opts = toCollectOptions(parsed);
    expect(opts.groups).toEqual([
      'processes',
      'network',
      'filesystemDiff',
      'writableLayer',
      'targetedFiles',
      'logs',
      'image',
    ]);
    expect(opts.caps?.maxFileBytes).toBe(256 * 1024 * 1024);
  });

  it('passes the image the pod status names and the capture and image caps, in terms the collector accepts', () => {
    const imageID = `registry.example/shop@sha256:${'c'.repeat(64)}`;
    const job = collectionJob(
      input({
        target: { ...input().target, image: 'registry.example/shop:1', imageID },
        collection: Collection.parse({
          artifacts: ['network', 'packetCapture', 'image'],
          captureSeconds: 12,
          maxCaptureMiB: 8,
          maxImageLayersMiB: 0,
        }),
      }),
    );
    const opts = toCollectOptions(parseCollect(job.spec!.template.spec!.containers[0]!.args!));
    expect(opts).toMatchObject({
      groups: ['network', 'packetCapture', 'image'],
      image: 'registry.example/shop:1',
      imageId: imageID,
      captureSeconds: 12,
      caps: { maxCaptureBytes: 8 * 1024 * 1024, maxImageLayerBytes: 0 },
    });
  });
});

describe('collection Job names', () => {
  it('are deterministic, distinct per case, case UID and container, and at most 63 characters', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,200}[a-z0-9])?$/),
        fc.uuid(),
        fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/),
        (name, uid, container) => {
          const n = collectionJobName({ name, uid }, container);
          expect(n).toBe(collectionJobName({ name, uid }, container));
          expect(n.length).toBeLessThanOrEqual(63);
          expect(n).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
          expect(n).not.toBe(collectionJobName({ name, uid }, `${container}x`));
          expect(n).not.toBe(collectionJobName({ name, uid: `${uid}x` }, container));
        },
      ),
    );
  });

  it('keep case and container apart where plain concatenation would not', () => {
    expect(collectionJobName({ name: 'a-b', uid: 'u' }, 'c')).not.toBe(
      collectionJobName({ name: 'a', uid: 'u' }, 'b-c'),
    );
    expect(collectionJobName({ name: 'case-web', uid: 'u' }, 'main')).toMatch(
      /^amber-collect-case-web-main-[0-9a-f]{8}$/,
    );
  });
});

describe('artifact groups', () => {
  it('maps the case groups onto the collector groups', () => {
    expect(
      collectorGroups(Collection.parse({ artifacts: ['memory', 'fullExport', 'orchestrator'] })),
    ).toEqual(['memory', 'targetedFiles', 'fullRootfs']);
    expect(
      collectorGroups(Collection.parse({ artifacts: ['memory', 'processes'], maxMemoryMiB: 0 })),
    ).toEqual(['processes']);
  });
});
