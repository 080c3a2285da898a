import { readdirSync, readFileSync } from 'node:fs';

/**
 * Every process the test suite starts carries this variable in its environment, set to one run
 * ID by the global setup: children inherit it, and so do their children (node under npx, a
 * container's init through its runtime spec). /proc/<pid>/environ shows it whatever became of
 * the parent, so the suite can find what it left behind.
 */
export const RUN_ENV = 'AMBER_TEST_RUN';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** R, S, D, Z, ... (a zombie has exited and only waits to be reaped). */
  state: string;
  args: string;
}

/** One process as /proc shows it now; undefined when it is gone (or exited and unreaped). */
export function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const [state, ppid, pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state === 'Z' || state === 'X') return undefined;
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
    return { pid, ppid: Number(ppid), pgid: Number(pgid), state: state!, args };
  } catch {
    return undefined;
  }
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Live (not zombie) processes whose environment has name=value. */
export function processesWithEnv(name: string, value: string): ProcessInfo[] {
  const needle = `${name}=${value}`;
  const out: ProcessInfo[] = [];
  for (const pid of pids()) {
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    if (!environ.split('\0').includes(needle)) continue;
    const info = processInfo(pid);
    if (info) out.push(info);
  }
  return out;
}

/** Live (not zombie) members of a process group. */
export function groupMembers(pgid: number): ProcessInfo[] {
  return pids()
    .map((pid) => processInfo(pid))
    .filter((p): p is ProcessInfo => p?.pgid === pgid);
}

export function describeProcesses(list: ProcessInfo[]): string {
  return list.map((p) => `  pid ${p.pid} ppid ${p.ppid} pgid ${p.pgid} ${p.state} ${p.args}`).join('\n');
}
