import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The chart's alerts and dashboard query metrics by name; a metric renamed in src/ would leave
 * an alert that never fires and a panel that stays empty. Every amber_* name they use must be
 * one src/ registers (a histogram's _bucket/_count/_sum series included).
 */
const root = join(import.meta.dirname, '..', '..', '..');

function registeredInSrc(): Set<string> {
  const names = new Set<string>();
  for (const file of readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const text = readFileSync(join(root, 'src', file), 'utf8');
    for (const [, name] of text.matchAll(/name: '(amber_[a-z0-9_]+)'/g)) names.add(name!);
  }
  return names;
}

function queried(file: string): string[] {
  const text = readFileSync(join(root, 'charts', 'amber', file), 'utf8');
  return [...new Set([...text.matchAll(/\b(amber_[a-z0-9_]+)\b/g)].map((m) => m[1]!))];
}

const unknown = (used: string[], known: Set<string>) =>
  used.filter((n) => !known.has(n) && !known.has(n.replace(/_(bucket|count|sum)$/, '')));

describe("the chart's alerts and dashboard", () => {
  const known = registeredInSrc();

  it.each(['templates/prometheusrule.yaml', 'files/dashboard.json'])(
    '%s queries only metrics src/ registers',
    (file) => {
      const used = queried(file);
      expect(used.length).toBeGreaterThan(5);
      expect(unknown(used, known)).toEqual([]);
    },
  );

  it('would notice a renamed metric (the check can fail)', () => {
    expect(
      unknown(['amber_cases', 'amber_case_total', 'amber_webhook_duration_seconds_count'], known),
    ).toEqual(['amber_case_total']);
  });

  it('the dashboard is valid JSON with a panel per query and no hard-coded data source', () => {
    const dash = JSON.parse(
      readFileSync(join(root, 'charts', 'amber', 'files', 'dashboard.json'), 'utf8'),
    ) as {
      panels: { type: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
    };
    const queries = dash.panels.filter((p) => p.type !== 'row');
    expect(queries.length).toBeGreaterThan(10);
    for (const p of queries) {
      expect(p.datasource?.uid).toBe('${datasource}');
      for (const t of p.targets ?? []) expect(t.expr).toContain('namespace="$namespace"');
    }
  });
});
