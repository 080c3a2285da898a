import { createHash } from 'node:crypto';
import { formatBytes, formatDuration, type Part, type ReportModel } from './model.js';
import { html as h } from './text.js';

/**
 * The report as one HTML file: no script, no external asset (it opens offline, from a USB stick
 * or an evidence locker), and a Content-Security-Policy that would block any script or remote
 * load even if an escaping mistake let markup through. The one inline style block is allowed by
 * its hash.
 */

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 78rem; padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; } th, td { border: 1px solid #ddd; padding: .25rem .45rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td { overflow-wrap: anywhere; } .n { white-space: nowrap; overflow-wrap: normal; } code, .mono { font-family: ui-monospace, monospace; font-size: 12.5px; }
.verdict { padding: .8rem 1rem; border-radius: 6px; font-weight: 600; font-size: 1.1rem; }
.ok { background: #e3f6e5; border: 2px solid #2e7d32; } .bad { background: #fdecea; border: 2px solid #c62828; }
.note { color: #b3261e; font-weight: 600; } .missing { color: #6b6b6b; font-style: italic; }
.sev-critical, .sev-high { color: #b3261e; font-weight: 600; } .meta { color: #555; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; } dt { font-weight: 600; } dd { margin: 0; }
`;

export function contentSecurityPolicy(): string {
  const styleHash = createHash('sha256').update(STYLE).digest('base64');
  return [
    "default-src 'none'",
    `style-src 'sha256-${styleHash}'`,
    "img-src 'none'",
    "script-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

function table(head: string[], rows: string[][]): string {
  if (rows.length === 0) return '<p class="missing">none</p>';
  return `<table><thead><tr>${head.map((c) => `<th>${h(c)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function partOr<T>(p: Part<T>, render: (v: T) => string): string {
  return p.collected ? render(p.value) : `<p class="missing">${h(p.why)}</p>`;
}

const notes = (n: string[]) => (n.length ? `<span class="note">${n.map(h).join('; ')}</span>` : '');
const code = (s: string | undefined) => (s ? `<code>${h(s)}</code>` : '');

export function renderHtml(m: ReportModel): string {
  const t = m.target;
  const out: string[] = [];
  out.push(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">`);
  out.push(`<meta http-equiv="Content-Security-Policy" content="${h(contentSecurityPolicy())}">`);
  out.push(`<meta name="referrer" content="no-referrer">`);
  out.push(`<title>Amber case ${h(m.caseId)}</title><style>${STYLE}</style></head><body>`);
  out.push(`<h1>Amber case ${h(m.caseId)}</h1>`);
  out.push(
    `<p class="meta">${h(m.location)} · report generated ${h(m.generatedAt)} by Amber ${h(m.amberVersion)}</p>`,
  );
  out.push(`<div id="verdict" class="verdict ${m.verdict.ok ? 'ok' : 'bad'}">${h(m.verdict.headline)}</div>`);
  if (m.verdict.problems.length)
    out.push(`<ul id="problems">${m.verdict.problems.map((p) => `<li>${h(p)}</li>`).join('')}</ul>`);

  out.push(`<h2 id="target">Target</h2><dl>`);
  const dd = (k: string, v: string | undefined) =>
    out.push(
      `<dt>${h(k)}</dt><dd>${v === undefined ? '<span class="missing">not recorded</span>' : h(v)}</dd>`,
    );
  dd('pod', t.namespace || t.pod ? `${t.namespace ?? '?'}/${t.pod ?? '?'}` : undefined);
  dd('pod UID', t.podUID);
  dd('node', t.node);
  dd('reason', t.reason);
  dd('policy', t.policy);
  dd('sealed at', t.sealedAt);
  out.push(`</dl><h3>Images</h3>`);
  out.push(
    partOr(m.images, (rows) =>
      table(
        ['container', 'image', 'image digest', 'container ID'],
        rows.map((r) => [h(r.container), h(r.image), code(r.imageID), code(r.containerID)]),
      ),
    ),
  );
  if (m.volumeSnapshots.length) {
    out.push(`<h3 id="volume-snapshots">Volume snapshots</h3>`);
    out.push(
      table(
        ['volume', 'claim', 'state', 'snapshot', 'handle', 'size', 'taken at', 'note'],
        m.volumeSnapshots.map((r) => [
          h(r.volume),
          h(r.claim),
          h(r.phase),
          h(r.name ?? ''),
          code(r.snapshotHandle ?? ''),
          h(r.restoreSize ?? ''),
          h(r.creationTime ?? ''),
          h(r.message ?? ''),
        ]),
      ),
    );
  }

  out.push(`<h2 id="alerts">Alerts</h2>`);
  if (m.alertCount?.count !== undefined)
    out.push(
      `<p>${h(m.alertCount.count)} alert(s) attached, first ${h(m.alertCount.firstSeen ?? '?')}, last ${h(m.alertCount.lastSeen ?? '?')}</p>`,
    );
  out.push(
    partOr(m.alerts, (rows) =>
      table(
        ['time', 'rule', 'priority', 'source', 'output'],
        rows.map((a) => [
          h(a.time),
          h(a.rule),
          h(a.priority),
          h(a.source),
          `<span class="mono">${h(a.output)}</span>`,
        ]),
      ),
    ),
  );

  out.push(`<h2 id="timeline">Timeline</h2>`);
  out.push(
    table(
      ['milestone', 'time', ''],
      m.milestones.map((s) => [
        h(s.label),
        s.time ? h(s.time) : '<span class="missing">not recorded</span>',
        h(s.note ?? ''),
      ]),
    ),
  );
  out.push(
    table(
      ['interval', 'duration'],
      m.durations.map((d) => [
        h(d.label),
        d.seconds === undefined
          ? `<span class="missing">${h(d.why ?? '')}</span>`
          : h(formatDuration(d.seconds)),
      ]),
    ),
  );
  out.push(
    table(
      ['time', 'action', 'outcome', 'message'],
      m.timeline.map((e) => [h(e.time), h(e.action), h(e.outcome), h(e.message)]),
    ),
  );

  for (const c of m.containers) {
    out.push(`<h2 id="${h(c.prefix.replace(/[^a-zA-Z0-9]/g, '-'))}">Container ${h(c.id ?? c.prefix)}</h2>`);
    if (c.runtime) out.push(`<p class="meta">runtime ${h(c.runtime)} · artifacts under ${h(c.prefix)}/</p>`);
    out.push(`<h3>Processes</h3>`);
    out.push(
      partOr(c.processes, (rows) =>
        table(
          ['PID', 'PPID', 'process', 'executable', 'command line', 'uid', 'stands out'],
          rows.map((p) => [
            `<span class="n">${h(p.pid)}</span>`,
            `<span class="n">${h(p.ppid ?? '')}</span>`,
            `${'&nbsp;&nbsp;'.repeat(Math.min(p.depth, 20))}${p.depth ? '└ ' : ''}${h(p.comm)}`,
            `<span class="mono">${h(p.exe)}</span>`,
            `<span class="mono">${h(p.cmdline)}</span>`,
            h(p.user ?? ''),
            notes(p.notes),
          ]),
        ),
      ),
    );
    out.push(`<h3>Sockets</h3>`);
    out.push(
      partOr(c.sockets, (s) => {
        const rows = (list: typeof s.listening) =>
          list.map((r) => [h(r.protocol), h(r.local), h(r.remote), h(r.state), h(r.owners)]);
        const head = ['protocol', 'local', 'remote', 'state', 'held by'];
        return (
          `<h4>Listening</h4>${table(head, rows(s.listening))}` +
          `<h4>Established</h4>${table(head, rows(s.established))}` +
          (s.other.length ? `<h4>Other</h4>${table(head, rows(s.other))}` : '')
        );
      }),
    );
    out.push(`<h3>Filesystem changes</h3>`);
    out.push(
      partOr(
        c.filesystem,
        (f) =>
          table(
            ['change', 'path', 'type', 'size', 'modified', 'stands out'],
            f.rows.map((d) => [
              h(d.kind),
              `<span class="mono">${h(d.path)}</span>`,
              h(d.type),
              d.size === undefined ? '' : h(formatBytes(d.size)),
              h(d.mtime ?? ''),
              notes(d.notes),
            ]),
          ) + (f.omitted ? `<p>${h(f.omitted)} more changes not shown (see filesystem/diff.json).</p>` : ''),
      ),
    );
    out.push(`<h3>Exposure</h3>`);
    out.push(
      partOr(c.exposure, (rows) =>
        table(
          ['severity', 'indicator', 'detail'],
          rows.map((e) => [
            `<span class="sev-${h(e.severity)}">${h(e.severity)}</span>`,
            h(e.id),
            h(e.detail),
          ]),
        ),
      ),
    );
  }

  out.push(`<h2 id="gaps">Gaps</h2>`);
  out.push(
    table(
      ['source', 'what', 'kind', 'why'],
      m.gaps.map((g) => [h(g.source), h(g.what), h(g.kind), h(g.reason)]),
    ),
  );

  out.push(`<h2 id="artifacts">Artifacts</h2>`);
  out.push(
    table(
      ['artifact', 'verified', 'size', 'SHA-256', 'retention', 'collected by', 'collected at'],
      m.artifacts.map((a) => [
        `<span class="mono">${h(a.name)}</span>`,
        a.status === 'ok' ? 'ok' : `<span class="note">${h(a.status)}</span>`,
        a.size === undefined ? '' : h(formatBytes(a.size)),
        code(a.sha256),
        h(a.retention),
        h(a.collectedBy ?? ''),
        h(a.collectedAt ?? ''),
      ]),
    ),
  );
  if (m.extraPredicate.length) {
    out.push(`<h2 id="more">More from the manifest</h2>`);
    for (const e of m.extraPredicate)
      out.push(`<h3>${h(e.key)}</h3><pre>${e.json.split('\n').map(h).join('\n')}</pre>`);
  }
  out.push(`</body></html>\n`);
  return out.join('\n');
}
