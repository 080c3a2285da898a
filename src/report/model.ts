import { posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { ArtifactCheck, VerifyReport } from '../evidence/verify.js';
import { VolumeSnapshotRecord } from '../api/forensiccase.js';

/**
 * What `amber report` shows, built from what the sealed case holds. Pure: the loader (load.ts)
 * reads and verifies, this turns the verified text into rows, the renderers (html.ts,
 * markdown.ts) only format. Every artifact is parsed leniently (fields may be added or missing
 * as the collector evolves): a part that is absent or unreadable becomes "not collected" with
 * the reason, never a failed report.
 */

/** An artifact's text as read from the store, and whether it matched the signed digest. */
export interface EvidenceFile {
  text: string;
  /** Why it is not shown, when it did not verify (digest mismatch, not signed, too large). */
  unusable?: string;
}

export interface ReportInput {
  verify: VerifyReport;
  /** The signed statement's predicate, as JSON (undefined when the signature did not hold). */
  predicate: unknown;
  files: ReadonlyMap<string, EvidenceFile>;
  generatedAt: Date;
  amberVersion: string;
}

export type Part<T> = { collected: true; value: T } | { collected: false; why: string };

export interface ReportModel {
  caseId: string;
  location: string;
  generatedAt: string;
  amberVersion: string;
  verdict: { ok: boolean; headline: string; problems: string[] };
  target: {
    namespace?: string;
    pod?: string;
    podUID?: string;
    node?: string;
    reason?: string;
    policy?: string;
    sealedAt?: string;
  };
  images: Part<{ container: string; image: string; imageID: string; containerID: string }[]>;
  /** The pod's volume snapshots as the manifest records them (case.volumeSnapshots). */
  volumeSnapshots: VolumeSnapshotRecord[];
  alerts: Part<{ rule: string; priority: string; time: string; source: string; output: string }[]>;
  alertCount?: { count?: number; firstSeen?: string; lastSeen?: string };
  timeline: { time: string; action: string; outcome: string; message: string }[];
  milestones: { label: string; time?: string; note?: string }[];
  durations: { label: string; seconds?: number; why?: string }[];
  containers: ContainerSection[];
  gaps: { source: string; what: string; reason: string; kind: 'failed' | 'skipped' | 'not collected' }[];
  artifacts: ArtifactRow[];
  /** Predicate fields this report does not know, shown as they are (a newer collector's). */
  extraPredicate: { key: string; json: string }[];
}

export interface ContainerSection {
  prefix: string;
  id?: string;
  runtime?: string;
  processes: Part<ProcessRow[]>;
  sockets: Part<{ listening: SocketRow[]; established: SocketRow[]; other: SocketRow[] }>;
  filesystem: Part<{ rows: DiffRow[]; omitted: number }>;
  exposure: Part<{ severity: string; id: string; detail: string }[]>;
}

export interface ProcessRow {
  pid: number;
  ppid?: number;
  depth: number;
  comm: string;
  cmdline: string;
  exe: string;
  user?: string;
  notes: string[];
}

export interface SocketRow {
  protocol: string;
  local: string;
  remote: string;
  state: string;
  owners: string;
}

export interface DiffRow {
  kind: string;
  path: string;
  type: string;
  size?: number;
  mtime?: string;
  notes: string[];
}

export interface ArtifactRow {
  name: string;
  status: string;
  size?: number;
  sha256?: string;
  retention: string;
  collectedBy?: string;
  collectedAt?: string;
}

/** Rows of the filesystem diff shown at most; the rest are counted (the tar holds them all). */
export const MAX_DIFF_ROWS = 2000;

// --- lenient schemas of what the collector and the orchestrator write ----------------------

const str = z.string().optional().catch(undefined);
const num = z.number().optional().catch(undefined);

const processSchema = z.looseObject({
  pid: z.number().int(),
  ppid: num,
  comm: str,
  cmdline: z.array(z.string()).optional().catch(undefined),
  exe: z
    .looseObject({ path: z.string(), deleted: z.boolean().optional().catch(undefined) })
    .optional()
    .catch(undefined),
  status: z
    .looseObject({
      uid: z
        .array(z.union([z.number(), z.string()]))
        .optional()
        .catch(undefined),
    })
    .optional()
    .catch(undefined),
  fds: z
    .array(z.looseObject({ fd: num, target: z.string(), kind: str, artifact: str }))
    .optional()
    .catch(undefined),
});
type ProcessEntry = z.infer<typeof processSchema>;

const socketSchema = z.looseObject({
  protocol: str,
  localAddress: str,
  localPort: num,
  remoteAddress: str,
  remotePort: num,
  state: str,
  owners: z
    .array(z.looseObject({ pid: num, comm: str }))
    .optional()
    .catch(undefined),
});

const diffSchema = z.looseObject({
  kind: z.string(),
  path: z.string(),
  type: str,
  size: num,
  mtime: str,
  mode: z.union([z.number(), z.string()]).optional().catch(undefined),
});

const exposureSchema = z.looseObject({ id: z.string(), severity: str, detail: str });

const gapSchema = z.looseObject({
  what: str,
  artifact: str,
  name: str,
  reason: str,
  message: str,
  error: str,
});

const alertSchema = z.looseObject({
  rule: str,
  priority: str,
  time: str,
  source: str,
  output: str,
});

const predicateSchema = z.looseObject({
  case: z
    .looseObject({
      id: str,
      namespace: str,
      pod: str,
      podUID: str,
      node: str,
      reason: str,
      policyRef: str,
      alert: alertSchema.optional().catch(undefined),
    })
    .optional()
    .catch(undefined),
  sealedAt: str,
  location: str,
  artifacts: z
    .array(z.looseObject({ name: z.string(), collectedBy: str, collectedAt: str }))
    .optional()
    .catch(undefined),
  timeline: z
    .array(z.looseObject({ time: z.string(), action: z.string(), outcome: str, message: str }))
    .optional()
    .catch(undefined),
});

/** Parses each element on its own: one malformed process does not hide the others. */
function each<T>(schema: z.ZodType<T>, value: unknown): { items: T[]; rejected: number } {
  const items: T[] = [];
  let rejected = 0;
  for (const v of Array.isArray(value) ? value : []) {
    const r = schema.safeParse(v);
    if (r.success) items.push(r.data);
    else rejected++;
  }
  return { items, rejected };
}

function readJson(file: EvidenceFile | undefined, name: string): Part<unknown> {
  if (!file) return { collected: false, why: `not collected: no ${name} in the case` };
  if (file.unusable) return { collected: false, why: `not shown: ${name} ${file.unusable}` };
  try {
    return { collected: true, value: JSON.parse(file.text) as unknown };
  } catch (err) {
    return { collected: false, why: `not shown: ${name} is not JSON (${(err as Error).message})` };
  }
}

const obj = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

// --- processes ------------------------------------------------------------------------------

const SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'zsh', 'ksh', 'mksh', 'csh', 'tcsh', 'fish']);
const NETWORK_TOOLS = new Set(['nc', 'ncat', 'netcat', 'socat', 'nmap', 'curl', 'wget', 'telnet', 'ssh']);
const TEMP_DIRS = ['/tmp/', '/var/tmp/', '/dev/shm/', '/run/'];

/** The program a process runs; for busybox (one binary, many applets) the applet, from argv[0]. */
function programName(p: ProcessEntry): string {
  const exe = p.exe?.path.replace(/ \(deleted\)$/, '');
  const name = posix.basename(exe && !exe.startsWith('/memfd:') ? exe : (p.comm ?? ''));
  if (name !== 'busybox') return name;
  return posix.basename(p.cmdline?.[0] ?? '') || (p.comm ?? name);
}

function isShell(p: ProcessEntry): boolean {
  return SHELLS.has(programName(p));
}

/** What stands out about one process, given the others (its parent, the container's init). */
export function processNotes(
  p: ProcessEntry,
  byPid: Map<number, ProcessEntry>,
  initPid: number | undefined,
): string[] {
  const notes: string[] = [];
  const exe = p.exe?.path ?? '';
  if (exe.startsWith('/memfd:')) notes.push('runs from a memfd (fileless)');
  else if (p.exe?.deleted || exe.endsWith(' (deleted)')) notes.push('executable deleted from disk');
  if (TEMP_DIRS.some((d) => exe.startsWith(d)))
    notes.push(`runs from ${exe.split('/').slice(0, -1).join('/')}`);
  for (const f of p.fds ?? []) {
    if (f.kind === 'memfd') notes.push(`holds memfd fd ${f.fd ?? '?'} (${f.target})`);
    else if (f.kind === 'deleted-file') notes.push(`holds deleted file fd ${f.fd ?? '?'} (${f.target})`);
  }
  if (isShell(p)) notes.push('shell');
  if (NETWORK_TOOLS.has(programName(p))) notes.push('network tool');
  const parent = p.ppid === undefined ? undefined : byPid.get(p.ppid);
  if (p.pid !== initPid && p.ppid !== undefined && !parent) {
    notes.push("parent outside the container: entered from outside (kubectl exec, the runtime's exec)");
  } else if (parent && isShell(p) && !isShell(parent) && parent.pid !== initPid) {
    notes.push(`unusual parent: a shell started by ${programName(parent) || '?'} (PID ${parent.pid})`);
  } else if (parent && isShell(p) && !isShell(parent) && parent.pid === initPid && programName(parent)) {
    notes.push(`unusual parent: a shell started by the container's main process ${programName(parent)}`);
  }
  return notes;
}

function processRows(value: unknown, initPid: number | undefined): ProcessRow[] {
  const { items } = each(processSchema, obj(value).processes ?? value);
  const byPid = new Map(items.map((p) => [p.pid, p]));
  const children = new Map<number, ProcessEntry[]>();
  const roots: ProcessEntry[] = [];
  for (const p of items) {
    const parent = p.ppid === undefined || p.ppid === p.pid ? undefined : byPid.get(p.ppid);
    if (parent) children.set(parent.pid, [...(children.get(parent.pid) ?? []), p]);
    else roots.push(p);
  }
  const rows: ProcessRow[] = [];
  const seen = new Set<number>();
  const walk = (p: ProcessEntry, depth: number) => {
    if (seen.has(p.pid)) return;
    seen.add(p.pid);
    const uid = p.status?.uid?.[0];
    rows.push({
      pid: p.pid,
      ...(p.ppid !== undefined && { ppid: p.ppid }),
      depth,
      comm: p.comm ?? '',
      cmdline: (p.cmdline ?? []).join(' '),
      exe: p.exe?.path ?? '',
      ...(uid !== undefined && { user: String(uid) }),
      notes: processNotes(p, byPid, initPid),
    });
    for (const c of (children.get(p.pid) ?? []).sort((a, b) => a.pid - b.pid)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.pid - b.pid)) walk(r, 0);
  // A cycle in ppid links (a forged file) leaves processes unreached: list them flat.
  for (const p of items) walk(p, 0);
  return rows;
}

// --- sockets --------------------------------------------------------------------------------

function endpoint(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return '?';
  return address.includes(':') ? `[${address}]:${port ?? '?'}` : `${address}:${port ?? '?'}`;
}

function socketRows(value: unknown) {
  const { items } = each(socketSchema, obj(value).inet);
  const listening: SocketRow[] = [];
  const established: SocketRow[] = [];
  const other: SocketRow[] = [];
  for (const s of items) {
    const row: SocketRow = {
      protocol: s.protocol ?? '?',
      local: endpoint(s.localAddress, s.localPort),
      remote: endpoint(s.remoteAddress, s.remotePort),
      state: s.state ?? '?',
      owners: (s.owners ?? []).map((o) => `${o.comm ?? '?'} (${o.pid ?? '?'})`).join(', '),
    };
    const udp = (s.protocol ?? '').startsWith('udp');
    if (s.state === 'LISTEN' || (udp && s.state === 'UNCONN' && s.localPort)) listening.push(row);
    else if (s.state === 'ESTABLISHED') established.push(row);
    else other.push(row);
  }
  return { listening, established, other };
}

// --- filesystem diff ------------------------------------------------------------------------

const KIND_NAMES: Record<string, string> = { A: 'added', C: 'changed', D: 'deleted' };

/** Why a changed path matters, most telling first; the rank orders the table. */
export function pathNotes(path: string, mode?: number | string): { rank: number; notes: string[] } {
  const notes: string[] = [];
  let rank = 9;
  const add = (r: number, note: string) => {
    notes.push(note);
    rank = Math.min(rank, r);
  };
  if (
    /^\/etc\/(ld\.so\.preload|passwd|shadow|group|sudoers(\.d\/.*)?|ssh\/sshd_config)$/.test(path) ||
    /\/\.ssh\/authorized_keys2?$/.test(path)
  )
    add(0, 'persistence or credentials');
  if (/^\/(etc\/cron|etc\/anacrontab|var\/spool\/cron)/.test(path)) add(1, 'cron');
  if (path.startsWith('/etc/')) add(2, 'system configuration');
  if (/^\/(tmp|var\/tmp|dev\/shm)\//.test(path)) add(3, 'temporary directory');
  if (/^\/(root|home\/[^/]+)\//.test(path)) add(4, 'home directory');
  const numericMode = typeof mode === 'string' ? parseInt(mode, 8) : mode;
  if (
    /^\/(usr\/)?(local\/)?s?bin\//.test(path) ||
    /\.(so(\.\d+)*|sh|elf|bin)$/.test(path) ||
    (numericMode !== undefined && !Number.isNaN(numericMode) && (numericMode & 0o111) !== 0)
  )
    add(5, 'executable');
  return { rank, notes };
}

function diffRows(value: unknown): { rows: DiffRow[]; omitted: number } {
  const { items } = each(diffSchema, obj(value).changes ?? value);
  const ranked = items.map((d) => {
    const { rank, notes } = pathNotes(d.path, d.type === 'directory' ? undefined : d.mode);
    return {
      rank,
      row: {
        kind: KIND_NAMES[d.kind] ?? d.kind,
        path: d.path,
        type: d.type ?? '?',
        ...(d.size !== undefined && { size: d.size }),
        ...(d.mtime !== undefined && { mtime: d.mtime }),
        notes,
      },
    };
  });
  ranked.sort((a, b) => a.rank - b.rank || (a.row.path < b.row.path ? -1 : a.row.path > b.row.path ? 1 : 0));
  return {
    rows: ranked.slice(0, MAX_DIFF_ROWS).map((r) => r.row),
    omitted: Math.max(0, ranked.length - MAX_DIFF_ROWS),
  };
}

// --- the whole report -----------------------------------------------------------------------

const SEVERITY_ORDER = ['critical', 'high', 'medium', 'low'];
const CONTAINMENT_ACTIONS = new Set(['IsolateNetwork', 'LabelPod', 'ContainNode']);

function part<T>(p: Part<unknown>, build: (v: unknown) => T): Part<T> {
  if (!p.collected) return p;
  try {
    return { collected: true, value: build(p.value) };
  } catch (err) {
    return { collected: false, why: `not shown: ${(err as Error).message}` };
  }
}

function seconds(from: string | undefined, to: string | undefined): number | undefined {
  if (!from || !to) return undefined;
  const a = Date.parse(from);
  const b = Date.parse(to);
  return Number.isNaN(a) || Number.isNaN(b) ? undefined : (b - a) / 1000;
}

function gapsOf(source: string, value: unknown): ReportModel['gaps'] {
  const o = obj(value);
  const out: ReportModel['gaps'] = [];
  const add = (list: unknown, kind: 'failed' | 'skipped') => {
    for (const g of each(gapSchema, list).items)
      out.push({
        source,
        what: g.what ?? g.artifact ?? g.name ?? '?',
        reason: g.reason ?? g.message ?? g.error ?? '(no reason recorded)',
        kind,
      });
  };
  add(o.failed, 'failed');
  add(o.gaps, 'failed');
  add(o.skipped, 'skipped');
  return out;
}

function retention(a: ArtifactCheck): string {
  if (!a.retainUntil) return 'none recorded';
  return `${a.retentionMode ?? ''} until ${a.retainUntil}${a.legalHold ? ', legal hold' : ''}`.trim();
}

export function buildReport(input: ReportInput): ReportModel {
  const { verify, files } = input;
  const predicate = predicateSchema.safeParse(input.predicate ?? {});
  const pred = predicate.success ? predicate.data : {};
  const kase = pred.case ?? {};

  const problems = [
    ...verify.manifest.problems.map((p) => `manifest: ${p}`),
    ...verify.artifacts.flatMap((a) => a.problems.map((p) => `${a.name}: ${p}`)),
  ];
  const verdict = {
    ok: verify.ok,
    headline: verify.ok
      ? `VERIFIED: signature valid (key ${verify.manifest.keyid?.slice(0, 16) ?? '?'}), all ${verify.artifacts.length} artifacts match their signed digests${verify.artifacts.some((a) => a.retainUntil) ? ' and are under retention' : ''}`
      : `NOT VERIFIED: ${problems.length} problem(s); what follows may not be what was sealed`,
    problems,
  };

  // The orchestrator's view.
  const podYaml = files.get('orchestrator/pod.yaml');
  const images: ReportModel['images'] = !podYaml
    ? { collected: false, why: 'not collected: no orchestrator/pod.yaml in the case' }
    : podYaml.unusable
      ? { collected: false, why: `not shown: orchestrator/pod.yaml ${podYaml.unusable}` }
      : part({ collected: true, value: parseYaml(podYaml.text, { maxAliasCount: 0 }) as unknown }, (pod) => {
          const status = obj(obj(pod).status);
          return [
            ...(Array.isArray(status.initContainerStatuses) ? status.initContainerStatuses : []),
            ...(Array.isArray(status.containerStatuses) ? status.containerStatuses : []),
          ].map((c) => {
            const s = obj(c);
            const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : 'not recorded');
            return {
              container: text(s.name),
              image: text(s.image),
              imageID: text(s.imageID),
              containerID: text(s.containerID),
            };
          });
        });

  const snapshots = z.array(VolumeSnapshotRecord).safeParse(obj(kase).volumeSnapshots ?? []);
  const volumeSnapshots = snapshots.success ? snapshots.data : [];

  const alertsJson = readJson(files.get('orchestrator/alerts.json'), 'orchestrator/alerts.json');
  let alertCount: ReportModel['alertCount'];
  const fromCase = kase.alert ? [kase.alert] : [];
  const alertRow = (a: z.infer<typeof alertSchema>) => ({
    rule: a.rule ?? '?',
    priority: a.priority ?? '?',
    time: a.time ?? '?',
    source: a.source ?? '?',
    output: a.output ?? '',
  });
  const alerts: ReportModel['alerts'] = alertsJson.collected
    ? part(alertsJson, (v) => {
        const o = obj(v);
        const received = obj(o.received);
        alertCount = {
          ...(typeof received.count === 'number' && { count: received.count }),
          ...(typeof received.firstSeen === 'string' && { firstSeen: received.firstSeen }),
          ...(typeof received.lastSeen === 'string' && { lastSeen: received.lastSeen }),
        };
        const listed = Object.values(received).find(Array.isArray);
        return [
          ...each(alertSchema, o.triggering ? [o.triggering] : []).items,
          ...each(alertSchema, listed ?? []).items,
        ].map(alertRow);
      })
    : fromCase.length > 0
      ? { collected: true, value: fromCase.map(alertRow) }
      : alertsJson;

  const timeline = (pred.timeline ?? []).map((e) => ({
    time: e.time,
    action: e.action,
    outcome: e.outcome ?? '',
    message: e.message ?? '',
  }));
  const alertTime =
    kase.alert?.time ?? (alerts.collected ? alerts.value.find((a) => a.time !== '?')?.time : undefined);
  const firstContainment = new Map<string, string>();
  for (const e of timeline)
    if (CONTAINMENT_ACTIONS.has(e.action) && e.outcome === 'Succeeded' && !firstContainment.has(e.action))
      firstContainment.set(e.action, e.time);
  const contained = [...firstContainment.values()].sort().at(-1);
  const collectedEntry = timeline.find((e) => e.action === 'CollectEvidence');
  const collected = collectedEntry?.time;
  const sealed = pred.sealedAt;
  const milestones = [
    { label: 'alert', time: alertTime, note: alertTime ? 'Falco event time' : 'no alert time recorded' },
    {
      label: 'contained',
      time: contained,
      note: contained ? [...firstContainment.keys()].join(', ') : 'no containment step recorded',
    },
    {
      label: 'collected',
      time: collected,
      note: collectedEntry
        ? collectedEntry.outcome === 'Succeeded'
          ? 'complete'
          : `${collectedEntry.outcome || 'recorded'}: incomplete`
        : 'no collection recorded',
    },
    { label: 'sealed', time: sealed, note: sealed ? 'manifest signed' : 'not sealed' },
  ];
  const between = (label: string, from?: string, to?: string) => {
    const s = seconds(from, to);
    return s === undefined ? { label, why: 'not recorded' } : { label, seconds: s };
  };
  const durations = [
    between('alert → contained', alertTime, contained),
    between('contained → collected', contained, collected),
    between('collected → sealed', collected, sealed),
    between('alert → sealed', alertTime, sealed),
  ];

  // Containers: every containers/<id>/ prefix the case holds an artifact under.
  const names = new Set([...verify.artifacts.map((a) => a.name), ...files.keys()]);
  const prefixes = [
    ...new Set([...names].flatMap((n) => /^(containers\/[^/]+)\//.exec(n)?.[1] ?? [])),
  ].sort();
  const gaps: ReportModel['gaps'] = [];
  const containers = prefixes.map((prefix): ContainerSection => {
    const json = (n: string) => readJson(files.get(`${prefix}/${n}`), `${prefix}/${n}`);
    const container = json('container.json');
    const info = container.collected ? obj(container.value) : {};
    const initPid = typeof info.initPid === 'number' ? info.initPid : undefined;
    const report = json('report.json');
    if (report.collected) gaps.push(...gapsOf(`${prefix}/report.json`, report.value));
    else gaps.push({ source: prefix, what: 'report.json', reason: report.why, kind: 'not collected' });
    const section: ContainerSection = {
      prefix,
      ...(typeof info.id === 'string' && { id: info.id }),
      ...(typeof info.runtime === 'string' && { runtime: info.runtime }),
      processes: part(json('processes.json'), (v) => processRows(v, initPid)),
      sockets: part(json('network.json'), socketRows),
      filesystem: part(json('filesystem/diff.json'), diffRows),
      exposure: part(json('exposure.json'), (v) =>
        each(exposureSchema, v)
          .items.map((e) => ({ severity: e.severity ?? '?', id: e.id, detail: e.detail ?? '' }))
          .sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity)),
      ),
    };
    for (const [what, p] of Object.entries({
      processes: section.processes,
      sockets: section.sockets,
      'filesystem diff': section.filesystem,
      exposure: section.exposure,
    }))
      if (!p.collected) gaps.push({ source: prefix, what, reason: p.why, kind: 'not collected' });
    return section;
  });
  if (prefixes.length === 0)
    gaps.push({
      source: 'case',
      what: 'containers',
      reason: 'not collected: no container artifacts in the case (collection off, or no running container)',
      kind: 'not collected',
    });
  const orchestratorReport = readJson(files.get('orchestrator/report.json'), 'orchestrator/report.json');
  if (orchestratorReport.collected)
    gaps.push(...gapsOf('orchestrator/report.json', orchestratorReport.value));
  else
    gaps.push({
      source: 'orchestrator',
      what: 'report.json',
      reason: orchestratorReport.why,
      kind: 'not collected',
    });
  gaps.push(...gapsOf('manifest', pred));

  const recorded = new Map((pred.artifacts ?? []).map((a) => [a.name, a]));
  const artifacts = verify.artifacts.map((a) => {
    const r = recorded.get(a.name);
    return {
      name: a.name,
      status: a.status,
      ...((a.actualSha256 ?? a.expectedSha256) && { sha256: a.actualSha256 ?? a.expectedSha256 }),
      ...((a.size ?? a.expectedSize) !== undefined && { size: a.size ?? a.expectedSize }),
      retention: retention(a),
      ...(r?.collectedBy && { collectedBy: r.collectedBy }),
      ...(r?.collectedAt && { collectedAt: r.collectedAt }),
    };
  });

  const known = new Set(['case', 'sealedAt', 'location', 'artifacts', 'timeline', 'gaps']);
  const extraPredicate = Object.entries(obj(input.predicate))
    .filter(([k]) => !known.has(k))
    .map(([key, v]) => ({ key, json: JSON.stringify(v, null, 2).slice(0, 20_000) }));

  return {
    caseId: verify.caseId,
    location: verify.location,
    generatedAt: input.generatedAt.toISOString(),
    amberVersion: input.amberVersion,
    verdict,
    target: {
      ...(kase.namespace && { namespace: kase.namespace }),
      ...(kase.pod && { pod: kase.pod }),
      ...(kase.podUID && { podUID: kase.podUID }),
      ...(kase.node && { node: kase.node }),
      ...(kase.reason && { reason: kase.reason }),
      ...(kase.policyRef && { policy: kase.policyRef }),
      ...(sealed && { sealedAt: sealed }),
    },
    images,
    volumeSnapshots,
    alerts,
    ...(alertCount && { alertCount }),
    timeline,
    milestones,
    durations,
    containers,
    gaps,
    artifacts,
    extraPredicate,
  };
}

/** 0.42 s, 12.3 s, 4 min 5 s, 2 h 3 min, 3 d 4 h. */
export function formatDuration(s: number): string {
  const sign = s < 0 ? '-' : '';
  const a = Math.abs(s);
  if (a < 60) return `${sign}${a < 10 ? a.toFixed(2) : a.toFixed(1)} s`;
  if (a < 3600) return `${sign}${Math.floor(a / 60)} min ${Math.floor(a % 60)} s`;
  if (a < 86_400) return `${sign}${Math.floor(a / 3600)} h ${Math.floor((a % 3600) / 60)} min`;
  return `${sign}${Math.floor(a / 86_400)} d ${Math.floor((a % 86_400) / 3600)} h`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
