import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface LogFile {
  /** Host path (hostRoot included). */
  path: string;
  container: string;
  file: string;
}

/**
 * The kubelet's log files of a pod: <root>/<namespace>_<pod>_<uid>/<container>/N.log, where N
 * counts restarts, so the previous instance's log (the one a crash-looping attacker's shell
 * left) is N-1.log. Rotated files (N.log.<time>, .gz) are included.
 */
export async function findPodLogs(
  podLogsRoot: string,
  namespace: string,
  pod: string,
  containers?: string[],
): Promise<LogFile[]> {
  const podDirs = (await readdir(podLogsRoot)).filter((d) => d.startsWith(`${namespace}_${pod}_`)).sort();
  const out: LogFile[] = [];
  for (const podDir of podDirs) {
    for (const container of (await readdir(join(podLogsRoot, podDir))).sort()) {
      if (containers && containers.length > 0 && !containers.includes(container)) continue;
      const dir = join(podLogsRoot, podDir, container);
      const files = await readdir(dir).catch(() => [] as string[]);
      for (const file of files.filter((f) => /^\d+\.log/.test(f)).sort())
        out.push({ path: join(dir, file), container, file });
    }
  }
  return out;
}

/**
 * Kubelet checkpoint archives of the pod's containers (the ContainerCheckpoint API writes
 * checkpoint-<pod>_<namespace>-<container>-<time>.tar).
 */
export async function findCheckpoints(
  checkpointsRoot: string,
  namespace: string,
  pod: string,
  containers?: string[],
): Promise<string[]> {
  const prefix = `checkpoint-${pod}_${namespace}-`;
  const files = (await readdir(checkpointsRoot)).filter((f) => f.startsWith(prefix) && f.endsWith('.tar'));
  return files
    .filter(
      (f) =>
        !containers ||
        containers.length === 0 ||
        containers.some((c) => f.slice(prefix.length).startsWith(`${c}-`)),
    )
    .sort()
    .map((f) => join(checkpointsRoot, f));
}

/** Turns a host file name into a valid artifact path segment (letters, digits, '.', '_', '-'). */
export function artifactSegment(name: string): string {
  const s = name.replace(/[^A-Za-z0-9._-]/g, '_');
  return /^[A-Za-z0-9]/.test(s) ? s : `x${s}`;
}
