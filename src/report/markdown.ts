import { formatBytes, formatDuration, type Part, type ReportModel } from './model.js';
import { md } from './text.js';

/** The report's Markdown twin: the same sections, every suspect-controlled string escaped. */

function table(head: string[], rows: string[][]): string[] {
  if (rows.length === 0) return ['_none_', ''];
  return [
    `| ${head.map(md).join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ];
}

function partOr<T>(p: Part<T>, render: (v: T) => string[]): string[] {
  return p.collected ? render(p.value) : [`_${md(p.why)}_`, ''];
}

/** Digests and IDs shown as code when they are plain tokens; anything else is escaped text. */
const code = (s: string | undefined) => (!s ? '' : /^[\w:@./+-]+$/.test(s) ? `\`${s}\`` : md(s));

export function renderMarkdown(m: ReportModel): string {
  const t = m.target;
  const out: string[] = [];
  out.push(`# Amber case ${md(m.caseId)}`, '');
  out.push(`${md(m.location)} · report generated ${md(m.generatedAt)} by Amber ${md(m.amberVersion)}`, '');
  out.push(`> **${md(m.verdict.headline)}**`, '');
  for (const p of m.verdict.problems) out.push(`- ${md(p)}`);
  if (m.verdict.problems.length) out.push('');

  out.push('## Target', '');
  const field = (k: string, v: string | undefined) =>
    out.push(`- **${k}:** ${v === undefined ? '_not recorded_' : md(v)}`);
  field('pod', t.namespace || t.pod ? `${t.namespace ?? '?'}/${t.pod ?? '?'}` : undefined);
  field('pod UID', t.podUID);
  field('node', t.node);
  field('reason', t.reason);
  field('policy', t.policy);
  field('sealed at', t.sealedAt);
  out.push('', '### Images', '');
  out.push(
    ...partOr(m.images, (rows) =>
      table(
        ['container', 'image', 'image digest', 'container ID'],
        rows.map((r) => [md(r.container), md(r.image), code(r.imageID), code(r.containerID)]),
      ),
    ),
  );
  if (m.volumeSnapshots.length)
    out.push(
      '### Volume snapshots',
      '',
      ...table(
        ['volume', 'claim', 'state', 'snapshot', 'handle', 'size', 'taken at', 'note'],
        m.volumeSnapshots.map((r) => [
          md(r.volume),
          md(r.claim),
          md(r.phase),
          md(r.name ?? ''),
          code(r.snapshotHandle ?? ''),
          md(r.restoreSize ?? ''),
          md(r.creationTime ?? ''),
          md(r.message ?? ''),
        ]),
      ),
    );

  out.push('## Alerts', '');
  if (m.alertCount?.count !== undefined)
    out.push(
      `${md(m.alertCount.count)} alert\\(s\\) attached, first ${md(m.alertCount.firstSeen ?? '?')}, last ${md(m.alertCount.lastSeen ?? '?')}`,
      '',
    );
  out.push(
    ...partOr(m.alerts, (rows) =>
      table(
        ['time', 'rule', 'priority', 'source', 'output'],
        rows.map((a) => [md(a.time), md(a.rule), md(a.priority), md(a.source), md(a.output)]),
      ),
    ),
  );

  out.push('## Timeline', '');
  out.push(
    ...table(
      ['milestone', 'time', ''],
      m.milestones.map((s) => [md(s.label), s.time ? md(s.time) : '_not recorded_', md(s.note ?? '')]),
    ),
  );
  out.push(
    ...table(
      ['interval', 'duration'],
      m.durations.map((d) => [
        md(d.label),
        d.seconds === undefined ? `_${md(d.why ?? '')}_` : md(formatDuration(d.seconds)),
      ]),
    ),
  );
  out.push(
    ...table(
      ['time', 'action', 'outcome', 'message'],
      m.timeline.map((e) => [md(e.time), md(e.action), md(e.outcome), md(e.message)]),
    ),
  );

  for (const c of m.containers) {
    out.push(`## Container ${md(c.id ?? c.prefix)}`, '');
    if (c.runtime) out.push(`runtime ${md(c.runtime)} · artifacts under ${md(c.prefix)}/`, '');
    out.push('### Processes', '');
    out.push(
      ...partOr(c.processes, (rows) =>
        table(
          ['PID', 'PPID', 'process', 'executable', 'command line', 'uid', 'stands out'],
          rows.map((p) => [
            md(p.pid),
            md(p.ppid ?? ''),
            `${'· '.repeat(Math.min(p.depth, 20))}${md(p.comm)}`,
            md(p.exe),
            md(p.cmdline),
            md(p.user ?? ''),
            p.notes.length ? `**${md(p.notes.join('; '))}**` : '',
          ]),
        ),
      ),
    );
    out.push('### Sockets', '');
    out.push(
      ...partOr(c.sockets, (s) => {
        const head = ['protocol', 'local', 'remote', 'state', 'held by'];
        const rows = (list: typeof s.listening) =>
          list.map((r) => [md(r.protocol), md(r.local), md(r.remote), md(r.state), md(r.owners)]);
        return [
          '#### Listening',
          '',
          ...table(head, rows(s.listening)),
          '#### Established',
          '',
          ...table(head, rows(s.established)),
          ...(s.other.length ? ['#### Other', '', ...table(head, rows(s.other))] : []),
        ];
      }),
    );
    out.push('### Filesystem changes', '');
    out.push(
      ...partOr(c.filesystem, (f) => [
        ...table(
          ['change', 'path', 'type', 'size', 'modified', 'stands out'],
          f.rows.map((d) => [
            md(d.kind),
            md(d.path),
            md(d.type),
            d.size === undefined ? '' : md(formatBytes(d.size)),
            md(d.mtime ?? ''),
            d.notes.length ? `**${md(d.notes.join('; '))}**` : '',
          ]),
        ),
        ...(f.omitted
          ? [`${md(f.omitted)} more changes not shown \\(see filesystem/diff\\.json\\)\\.`, '']
          : []),
      ]),
    );
    out.push('### Exposure', '');
    out.push(
      ...partOr(c.exposure, (rows) =>
        table(
          ['severity', 'indicator', 'detail'],
          rows.map((e) => [md(e.severity), md(e.id), md(e.detail)]),
        ),
      ),
    );
  }

  out.push('## Gaps', '');
  out.push(
    ...table(
      ['source', 'what', 'kind', 'why'],
      m.gaps.map((g) => [md(g.source), md(g.what), md(g.kind), md(g.reason)]),
    ),
  );
  out.push('## Artifacts', '');
  out.push(
    ...table(
      ['artifact', 'verified', 'size', 'SHA-256', 'retention', 'collected by', 'collected at'],
      m.artifacts.map((a) => [
        md(a.name),
        a.status === 'ok' ? 'ok' : `**${md(a.status)}**`,
        a.size === undefined ? '' : md(formatBytes(a.size)),
        code(a.sha256),
        md(a.retention),
        md(a.collectedBy ?? ''),
        md(a.collectedAt ?? ''),
      ]),
    ),
  );
  if (m.extraPredicate.length) {
    out.push('## More from the manifest', '');
    // Four-backtick fences: the JSON (suspect-influenced strings) cannot close them, JSON escapes
    // every control character, and nothing inside a fence is rendered.
    for (const e of m.extraPredicate)
      out.push(`### ${md(e.key)}`, '', '````json', e.json.replaceAll('````', '` ` ` `'), '````', '');
  }
  return `${out.join('\n')}\n`;
}
