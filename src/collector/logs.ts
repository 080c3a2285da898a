import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface LogFile {
  /** Host path (hostRoot included). */
  path: string;
  /** The same, relative to the log root: every directory on the way is opened without following. */
  rel: string;
  container: string;
  file: string;
}

/**
 * The kubelet's log files of a pod: <root>/<namespace>_<pod>_<uid>/<container>/N.log, where N
 * counts restarts, so the previous instance's log (the one a crash-looping attacker's shell
 * left) is N-1.log. Rotated files (N.log.<time>, .gz) are included.
 *
 * Only the directory of the pinned pod UID: an earlier pod of the same name (a StatefulSet's
 * replaced replica) left its own directory beside it, and its logs are not the suspect's.
 */
export async function findPodLogs(
  podLogsRoot: string,
  namespace: string,
  pod: string,
  podUid: string,
  containers?: string[],
): Promise<LogFile[]> {
  const podDir = podLogsDir(namespace, pod, podUid);
  const out: LogFile[] = [];
  const entries = await readdir(podLogsRoot);
  if (!entries.includes(podDir)) return out;
  for (const container of (await readdir(join(podLogsRoot, podDir))).sort()) {
    if (containers && containers.length > 0 && !containers.includes(container)) continue;
    const dir = join(podLogsRoot, podDir, container);
    const files = await readdir(dir).catch(() => [] as string[]);
    for (const file of files.filter((f) => /^\d+\.log/.test(f)).sort())
      out.push({ path: join(dir, file), rel: `${podDir}/${container}/${file}`, container, file });
  }
  return out;
}

/** The kubelet's directory name for a pod's logs (pkg/kubelet/kuberuntime BuildPodLogsDirectory). */
export function podLogsDir(namespace: string, pod: string, podUid: string): string {
  return `${namespace}_${pod}_${podUid}`;
}

/** Go's time.RFC3339, which the kubelet formats the checkpoint time with. */
const rfc3339 = String.raw`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})`;
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export type CheckpointMatch =
  { match: true; container: string; time: string } | { match: false; reason?: string };

/**
 * Whether `file` is a kubelet checkpoint archive of `pod` in `namespace`. The kubelet names it
 * `checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar`, and namespaces and container
 * names may both hold '-', so `checkpoint-web_shop-prod-app-<time>.tar` is pod web's container
 * `prod-app` in `shop` or its container `app` in `shop-prod`. The time is matched exactly at the
 * end, and the container must be one of `containers` (the pod's, from the API server); without
 * that list only a container name without '-' is unambiguous, and any other is refused with the
 * reason (recorded in the report, never collected as this pod's).
 */
export function parseCheckpointName(
  file: string,
  pod: string,
  namespace: string,
  containers?: string[],
): CheckpointMatch {
  const prefix = `checkpoint-${pod}_${namespace}-`;
  if (!file.startsWith(prefix) || !file.endsWith('.tar')) return { match: false };
  const m = new RegExp(`^(.+)-(${rfc3339})$`).exec(file.slice(prefix.length, -'.tar'.length));
  if (!m?.[1] || !m[2] || !dnsLabel.test(m[1])) return { match: false };
  const [, container, time] = m;
  if (containers && containers.length > 0) {
    if (containers.includes(container)) return { match: true, container, time };
    return { match: false };
  }
  if (container.includes('-')) {
    const [first] = container.split('-');
    return {
      match: false,
      reason:
        `container "${container}" of ${namespace}, or a container of namespace ${namespace}-${first}...: ` +
        'ambiguous without the container name (--container-name); not collected',
    };
  }
  return { match: true, container, time };
}

/** Turns a host file name into a valid artifact path segment (letters, digits, '.', '_', '-'). */
export function artifactSegment(name: string): string {
  const s = name.replace(/[^A-Za-z0-9._-]/g, '_');
  return /^[A-Za-z0-9]/.test(s) ? s : `x${s}`;
}
