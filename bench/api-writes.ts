import { readFileSync } from 'node:fs';

/**
 * API writes counted at the API server: its audit log (Cluster option `auditLog`), one JSON line
 * per write request that got an answer, failed ones (409, 422) included.
 */
export interface AuditWrite {
  verb: string;
  user: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  code: number;
  /**
   * When the API server received the request (epoch ms): the write that isolates a pod was
   * received before any watcher can see the pod isolated, whereas its answer may be logged after.
   */
  at: number;
}

export function readAuditWrites(path: string): AuditWrite[] {
  const out: AuditWrite[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as {
      stage: string;
      verb: string;
      user?: { username?: string };
      objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
      responseStatus?: { code?: number };
      requestReceivedTimestamp: string;
    };
    if (e.stage !== 'ResponseComplete') continue;
    out.push({
      verb: e.verb,
      user: e.user?.username ?? '',
      resource: e.objectRef?.resource ?? '',
      ...(e.objectRef?.subresource ? { subresource: e.objectRef.subresource } : {}),
      ...(e.objectRef?.namespace ? { namespace: e.objectRef.namespace } : {}),
      ...(e.objectRef?.name ? { name: e.objectRef.name } : {}),
      code: e.responseStatus?.code ?? 0,
      at: Date.parse(e.requestReceivedTimestamp),
    });
  }
  return out;
}

export const writeKind = (w: AuditWrite) =>
  `${w.verb} ${w.resource}${w.subresource ? `/${w.subresource}` : ''}${w.code >= 400 ? ` (${w.code})` : ''}`;

/** Counts by verb and resource (failed answers apart), largest first. */
export function byKind(writes: AuditWrite[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const w of writes) counts.set(writeKind(w), (counts.get(writeKind(w)) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]);
}
