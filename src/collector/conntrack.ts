import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Connections the suspect held before it was contained. A NetworkPolicy enforcer such as
 * kube-router (and most others) accepts packets of connections the kernel already tracks as
 * ESTABLISHED before it looks at policy, so a reverse shell opened before containment outlives
 * the deny-all policy. Once the socket table is in the evidence, the collector deletes the pod
 * addresses' entries from the host's connection-tracking table: the next packet of such a
 * connection is tracked afresh and meets the policy, which drops it. The sockets themselves are
 * not touched (the suspect's processes still see them open; nothing in the container changes).
 *
 * Runs `conntrack -D` in the host's network namespace (`nsenter --net=/proc/<pid>/ns/net`): the
 * collection pod has the host's PID namespace but its own network namespace.
 */

/**
 * Where the address may stand in a tracked flow. A connection that came in through a Service,
 * NodePort or load balancer was NATed: its original destination is the Service's address, and
 * the pod's appears only as the reply's source; so all four are cut (as Calico's felix does).
 */
export const DIRECTIONS = {
  source: '-s',
  destination: '-d',
  'reply source': '-r',
  'reply destination': '-q',
} as const;
export type Direction = keyof typeof DIRECTIONS;

export interface ConntrackCut {
  address: string;
  direction: Direction;
  /** Flow entries the kernel deleted; undefined when conntrack's answer could not be read. */
  deleted?: number;
  error?: string;
}

/** `conntrack` arguments that delete every flow from or to `address`, IPv4 or IPv6. */
export function conntrackDeleteArgs(address: string, direction: Direction): string[] {
  const family = isIP(address);
  if (family === 0) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  return ['-D', '-f', family === 6 ? 'ipv6' : 'ipv4', DIRECTIONS[direction], address];
}

/**
 * How many entries conntrack says it deleted. It answers on stderr, and exits 1 when that is 0:
 * "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted."
 */
export function parseDeleted(output: string): number | undefined {
  const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(output);
  return m ? Number(m[1]) : undefined;
}

export interface CutOptions {
  procRoot: string;
  /**
   * Processes that may be in the host's network namespace, in order of preference: the host's
   * PID 1, then the container's runtime shim (its init's parent). Some hosts do not let even
   * privileged root open PID 1's namespaces (this test machine's init); the shim runs in the
   * node's network namespace.
   */
  hostPids: readonly number[];
  /** The container's own network namespace (`net:[inode]`): never the one cut in. */
  containerNetns?: string;
  timeoutMs: number;
}

/** The first candidate's network namespace that can be read and is not the container's. */
export async function hostNetnsPath(
  procRoot: string,
  pids: readonly number[],
  containerNetns: string | undefined,
): Promise<string | undefined> {
  for (const pid of pids) {
    const path = join(procRoot, String(pid), 'ns', 'net');
    const ns = await readlink(path).catch(() => undefined);
    if (ns && ns !== containerNetns) return path;
  }
  return undefined;
}

/** Deletes the tracked flows from and to each address; never throws, each result says. */
export async function cutTrackedConnections(
  addresses: readonly string[],
  opts: CutOptions,
): Promise<ConntrackCut[]> {
  const netns = await hostNetnsPath(opts.procRoot, opts.hostPids, opts.containerNetns);
  if (!netns)
    return addresses.map((address) => ({
      address,
      direction: 'source' as const,
      error: `no readable host network namespace among PIDs ${opts.hostPids.join(', ')}`,
    }));
  const out: ConntrackCut[] = [];
  for (const address of addresses) {
    for (const direction of Object.keys(DIRECTIONS) as Direction[]) {
      let args: string[];
      try {
        args = conntrackDeleteArgs(address, direction);
      } catch (err) {
        out.push({ address, direction, error: (err as Error).message });
        continue;
      }
      out.push({
        address,
        direction,
        ...(await run(['--net=' + netns, 'conntrack', ...args], opts.timeoutMs)),
      });
    }
  }
  return out;
}

function run(args: string[], timeoutMs: number): Promise<{ deleted?: number; error?: string }> {
  return new Promise((resolve) => {
    execFile('nsenter', args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const deleted = parseDeleted(`${stderr}\n${stdout}`);
      if (deleted !== undefined) return resolve({ deleted });
      resolve({ error: (err?.message ?? stderr.trim()) || 'conntrack gave no count' });
    });
  });
}
