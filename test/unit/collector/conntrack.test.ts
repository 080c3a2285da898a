import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  conntrackDeleteArgs,
  hostNetnsPath,
  parseDeleted,
  type Direction,
} from '../../../src/collector/conntrack.js';

describe('conntrackDeleteArgs', () => {
  it.each<[string, Direction, string[]]>([
    ['10.244.0.7', 'source', ['-D', '-f', 'ipv4', '-s', '10.244.0.7']],
    ['10.244.0.7', 'destination', ['-D', '-f', 'ipv4', '-d', '10.244.0.7']],
    // In through a Service or NodePort: the pod's address is only on the reply side.
    ['10.244.0.7', 'reply source', ['-D', '-f', 'ipv4', '-r', '10.244.0.7']],
    ['10.244.0.7', 'reply destination', ['-D', '-f', 'ipv4', '-q', '10.244.0.7']],
    ['fd00:10:244::7', 'source', ['-D', '-f', 'ipv6', '-s', 'fd00:10:244::7']],
  ])('%s as %s', (address, direction, args) => {
    expect(conntrackDeleteArgs(address, direction)).toEqual(args);
  });

  it.each(['', '0/0', '10.0.0.0/8', '-s', '10.0.0.1 -d 10.0.0.2', 'example.com'])(
    'refuses %j: only one address, never a range or an option',
    (address) => {
      expect(() => conntrackDeleteArgs(address, 'source')).toThrow(/not an IP address/);
    },
  );
});

describe('parseDeleted', () => {
  it.each<[string, number | undefined]>([
    ['conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n', 2],
    ['conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n', 0],
    ['conntrack v1.4.6 (conntrack-tools): 1 flow entry has been deleted.\n', 1],
    ['nsenter: cannot open /proc/1/ns/net: Permission denied\n', undefined],
    ['', undefined],
  ])('%j', (output, deleted) => {
    expect(parseDeleted(output)).toBe(deleted);
  });
});

describe('hostNetnsPath', () => {
  // A /proc stand-in: ns/net links as the kernel shows them (readlink gives "net:[inode]").
  const proc = mkdtempSync(join(tmpdir(), 'amber-proc-'));
  const ns = (pid: number, target: string) => {
    mkdirSync(join(proc, String(pid), 'ns'), { recursive: true });
    symlinkSync(target, join(proc, String(pid), 'ns', 'net'));
  };
  ns(42, 'net:[4026531840]'); // the runtime shim, in the node's namespace
  ns(7, 'net:[4026532999]'); // a process inside the container
  afterAll(() => rmSync(proc, { recursive: true, force: true }));

  it.each<[string, number[], string | undefined, string | undefined]>([
    ["PID 1's namespaces unreadable: the shim's", [1, 42], 'net:[4026532999]', '42'],
    ['the first readable candidate wins', [42, 7], 'net:[4026532999]', '42'],
    ["never the container's own namespace", [7], 'net:[4026532999]', undefined],
    ['nothing readable', [1, 99], undefined, undefined],
  ])('%s', async (_name, pids, container, pid) => {
    const path = await hostNetnsPath(proc, pids, container);
    expect(path).toBe(pid ? join(proc, pid, 'ns', 'net') : undefined);
  });
});
