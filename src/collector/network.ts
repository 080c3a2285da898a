import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProcessSnapshot } from './processes.js';
import {
  parseInetSockets,
  parseIPv6Routes,
  parseRoutes,
  parseUnixSockets,
  type InetProtocol,
  type InetSocket,
  type Route,
  type Route6,
  type UnixSocket,
} from './procfs.js';
import { errorMessage } from './report.js';
import { readContainedText } from './safe-fs.js';

export interface SocketOwner {
  pid: number;
  fd: number;
  comm?: string;
}

export interface NetworkSnapshot {
  /** True when the container shares the host's network namespace (hostNetwork). */
  hostNetwork: boolean | 'unknown';
  netns?: string;
  inet: (InetSocket & { owners: SocketOwner[] })[];
  unix: (UnixSocket & { owners: SocketOwner[] })[];
  routes?: Route[];
  routes6?: Route6[];
  resolvConf?: string;
  hosts?: string;
  errors: Record<string, string>;
}

/** socket inode -> the container processes holding it, from their fd links (socket:[inode]). */
export function socketOwners(processes: ProcessSnapshot[]): Map<number, SocketOwner[]> {
  const owners = new Map<number, SocketOwner[]>();
  for (const p of processes) {
    for (const f of p.fds ?? []) {
      const m = /^socket:\[(\d+)\]$/.exec(f.target);
      if (!m) continue;
      const inode = Number(m[1]);
      owners.set(inode, [...(owners.get(inode) ?? []), { pid: p.pid, fd: f.fd, comm: p.comm }]);
    }
  }
  return owners;
}

/**
 * The container's network as `ss -tunapx` would show it from inside: /proc/<pid>/net/* shows
 * the network namespace of <pid>, so reading through init's entry needs no setns. With
 * hostNetwork every host socket appears; owners are resolved among the container's processes only.
 */
export async function readNetwork(
  procRoot: string,
  initPid: number,
  processes: ProcessSnapshot[],
  hostNetNs: string | undefined,
): Promise<NetworkSnapshot> {
  const dir = join(procRoot, String(initPid));
  const errors: Record<string, string> = {};
  const read = async (rel: string): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, rel), 'utf8');
    } catch (err) {
      errors[rel] = errorMessage(err);
      return undefined;
    }
  };
  const netns = processes.find((p) => p.pid === initPid)?.namespaces?.net;
  const owners = socketOwners(processes);
  const inet: NetworkSnapshot['inet'] = [];
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6'] as InetProtocol[]) {
    const text = await read(`net/${proto}`);
    // IPv6 disabled on the node: no tcp6/udp6 file is not a gap worth recording as a failure.
    if (text === undefined) continue;
    for (const s of parseInetSockets(text, proto)) inet.push({ ...s, owners: owners.get(s.inode) ?? [] });
  }
  const unixText = await read('net/unix');
  const unix = unixText
    ? parseUnixSockets(unixText).map((s) => ({ ...s, owners: owners.get(s.inode) ?? [] }))
    : [];
  const routeText = await read('net/route');
  const route6Text = await read('net/ipv6_route');
  return {
    hostNetwork: netns === undefined || hostNetNs === undefined ? 'unknown' : netns === hostNetNs,
    netns,
    inet,
    unix,
    routes: routeText !== undefined ? parseRoutes(routeText) : undefined,
    routes6: route6Text !== undefined ? parseIPv6Routes(route6Text) : undefined,
    resolvConf: await readContained(dir, 'etc/resolv.conf', errors),
    hosts: await readContained(dir, 'etc/hosts', errors),
    errors,
  };
}

/** A file of the container's root, refusing symlinks that would lead the host-side read astray. */
async function readContained(
  procPidDir: string,
  rel: string,
  errors: Record<string, string>,
): Promise<string | undefined> {
  try {
    return await readContainedText(join(procPidDir, 'root'), rel, 1024 * 1024);
  } catch (err) {
    errors[`root/${rel}`] = errorMessage(err);
    return undefined;
  }
}
