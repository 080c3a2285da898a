import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { capturePackets, startCapture } from '../../../src/collector/capture.js';
import { collectContainer, type CollectResult } from '../../../src/collector/collect.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { readPcap } from '../../testenv/pcap.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Run {
  result: CollectResult;
  store: LocalEvidenceStore;
  prefix: string;
  artifact(name: string): Promise<Buffer>;
}

const dirs: string[] = [];
const containers: TestContainer[] = [];
afterEach(async () => {
  for (const c of containers.splice(0)) await c.stop();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function collect(
  c: TestContainer,
  caseId: string,
  opts: { seconds: number; maxBytes: number },
): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'amber-capture-'));
  dirs.push(dir);
  const store = new LocalEvidenceStore({ root: dir, registry: createRegistry() });
  const result = await collectContainer(
    {
      caseId,
      containerId: c.id,
      runtime: 'runc',
      runtimeRoot: c.stateRoot,
      snapshotterRoots: c.layerRoots,
      hostReferencePid: process.pid,
      terminationMessagePath: null,
      groups: ['packetCapture'],
      captureSeconds: opts.seconds,
      caps: { maxCaptureBytes: opts.maxBytes },
    },
    store,
    { registry: createRegistry() },
  );
  const prefix = `containers/${c.id.slice(0, 12)}`;
  return { result, store, prefix, artifact: async (n) => readAll(await store.get(caseId, `${prefix}/${n}`)) };
}

describe('packet capture from inside the suspect network namespace', () => {
  it('records the packets a container exchanges, ports and payload, as a pcap that is sealed like the rest', async () => {
    // A server and a client inside the container's own namespace, talking over its loopback.
    const c = await startContainer({
      command: [
        '/bin/sh',
        '-c',
        [
          'nc -ll -p 7001 -e echo amber-reply &',
          'touch /ready',
          'i=0; while true; do i=$((i+1)); echo "amber-request-$i" | nc 127.0.0.1 7001 > /dev/null; sleep 0.1; done',
        ].join('\n'),
      ],
    });
    containers.push(c);
    await c.waitForFile('/ready');
    const run = await collect(c, 'case-capture', { seconds: 3, maxBytes: 64 * 1024 * 1024 });

    const pcap = await run.artifact('network/capture.pcap');
    const { packets } = readPcap(pcap);
    const tcp = packets.filter((p) => p.proto === 'tcp');
    expect(tcp.some((p) => p.dst === 7001 && p.payload.toString().startsWith('amber-request-'))).toBe(true);
    expect(tcp.some((p) => p.src === 7001 && p.payload.toString() === 'amber-reply\n')).toBe(true);

    const summary = JSON.parse((await run.artifact('network/capture.json')).toString()) as Record<
      string,
      unknown
    >;
    expect(summary).toMatchObject({
      endedBy: 'time',
      truncated: false,
      partialTailBytes: 0,
      bytes: pcap.length,
    });
    expect(summary.netns).toMatch(/^net:\[\d+\]$/);
    // Hashed and recorded like every artifact.
    const entry = run.result.report.collected.find(
      (a) => a.artifact === `${run.prefix}/network/capture.pcap`,
    );
    expect(entry).toMatchObject({ size: pcap.length });
    // (Short-lived nc processes may exit while the process list is read: not the capture's business.)
    expect(run.result.report.failed.filter((f) => f.what.includes('capture'))).toEqual([]);
  });

  it('cuts a flood at the byte cap, at a packet boundary, and records the truncation', async () => {
    const c = await startContainer({
      command: [
        '/bin/sh',
        '-c',
        [
          'while true; do nc -l -p 7003 > /dev/null; done &',
          'touch /ready',
          'while true; do cat /dev/zero | nc 127.0.0.1 7003; sleep 0.1; done',
        ].join('\n'),
      ],
    });
    containers.push(c);
    await c.waitForFile('/ready');
    const cap = 1024 * 1024;
    // A window far longer than the test may take: only the cap can end this capture.
    const run = await collect(c, 'case-flood', { seconds: 600, maxBytes: cap });

    const pcap = await run.artifact('network/capture.pcap');
    expect(pcap.length).toBeLessThanOrEqual(cap);
    const { packets } = readPcap(pcap); // throws unless it ends exactly at a record
    expect(packets.some((p) => p.proto === 'tcp' && p.dst === 7003 && p.payload.length > 0)).toBe(true);
    const summary = JSON.parse((await run.artifact('network/capture.json')).toString()) as Record<
      string,
      unknown
    >;
    expect(summary).toMatchObject({ endedBy: 'byte cap', truncated: true, packets: packets.length });
    expect(run.result.report.skipped).toContainEqual({
      what: 'network/capture.pcap',
      reason: expect.stringMatching(/^truncated at the byte cap of 1048576 bytes/),
    });
  });

  it('ends at its window when the container exits mid-capture, with what it got', async () => {
    const c = await startContainer({
      command: [
        '/bin/sh',
        '-c',
        [
          'nc -ll -p 7005 -e echo amber-beacon &',
          'touch /ready',
          'while true; do echo hello | nc 127.0.0.1 7005 > /dev/null; sleep 0.05; done',
        ].join('\n'),
      ],
    });
    containers.push(c);
    await c.waitForFile('/ready');
    const capture = await startCapture({
      netnsPath: `/proc/${c.pid}/ns/net`,
      maxBytes: 1 << 20,
      durationMs: 3000,
    });
    let bytes = 0;
    let stopped = false;
    for await (const chunk of capture.stream) {
      bytes += chunk.length;
      // The first packet is in: the container and its processes go away.
      if (bytes > 24 && !stopped) {
        stopped = true;
        await c.stop();
      }
    }
    const s = await capture.done;
    expect(stopped).toBe(true);
    expect(s).toMatchObject({ endedBy: 'time', abandoned: false, partialTailBytes: 0, bytes });
    expect(s.packets).toBeGreaterThan(0);
  });

  it('records a gap, and starts nothing, when the namespace is gone or is not the one expected', async () => {
    const dead = spawnSync('true').pid;
    const gaps: { what: string; err: unknown }[] = [];
    const run = {
      put: () => Promise.reject(new Error('nothing may be stored')),
      json: () => Promise.reject(new Error('nothing may be stored')),
      gap: (what: string, err: unknown) => gaps.push({ what, err }),
      skip: () => undefined,
    };
    await capturePackets(run, {
      procRoot: '/proc',
      initPid: dead,
      hostReferencePid: process.pid,
      maxBytes: 1 << 20,
      durationMs: 1000,
    });
    expect(gaps).toEqual([{ what: 'network/capture.pcap', err: expect.stringMatching(/it exited/) }]);
    // A PID that was recycled into another namespace: the inode check refuses it.
    await expect(
      startCapture({ netnsPath: '/proc/self/ns/net', expectedNetns: 'net:[1]', maxBytes: 1, durationMs: 1 }),
    ).rejects.toThrow(/not the container's net:\[1\]/);
  });
});
