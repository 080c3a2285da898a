import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findPodLogs, podLogsDir } from '../../../src/collector/logs.js';

const UID = '0c5f0a7e-1111-2222-3333-444455556666';
const EARLIER = '99999999-1111-2222-3333-444455556666';
let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'amber-pod-logs-'));
  for (const [dir, file] of [
    [podLogsDir('shop', 'web-0', UID), 'app/0.log'],
    [podLogsDir('shop', 'web-0', EARLIER), 'app/3.log'],
    [podLogsDir('shop', 'web-0-x', UID), 'app/5.log'],
    [podLogsDir('shop-x', 'web-0', UID), 'app/6.log'],
  ] as const) {
    mkdirSync(join(root, dir, 'app'), { recursive: true });
    writeFileSync(join(root, dir, file), file);
  }
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("the suspect pod's kubelet logs", () => {
  it('are the directory of the pinned UID only: not an earlier pod of the same name, nor a namesake', async () => {
    const files = await findPodLogs(root, 'shop', 'web-0', UID);
    expect(files.map((f) => f.path)).toEqual([join(root, `shop_web-0_${UID}`, 'app', '0.log')]);
  });

  it('are none when the pinned UID has no directory, even if a pod of that name has one', async () => {
    expect(await findPodLogs(root, 'shop', 'web-0', 'aaaaaaaa-0000-0000-0000-000000000000')).toEqual([]);
  });
});
