import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/**
 * V8's JSON.parse in Node up to 24.21 could read an escaped object key back wrong once an earlier
 * parse had seen a similar key (nodejs/node issue 63785; ADR 0016). The intake parses bodies a
 * client controls, so one request could change the keys of the next. The cache is per process:
 * each trigger runs in a fresh child of the Node under test, where it fails deterministically on
 * an affected Node (checked on 24.21.0).
 */
const triggers: Array<{ name: string; poison: string; probe: string; key: string }> = [
  {
    name: 'a \\" key after a \\\\\\" key',
    poison: String.raw`{"\\\"":1}`,
    probe: String.raw`{"\"!":1}`,
    key: '"!',
  },
  {
    name: 'a \\" key after a \\\\ key',
    poison: String.raw`{"h":[],"\\":0}`,
    probe: String.raw`{"h":1,"\"":2}`,
    key: '"',
  },
];

describe('JSON.parse of escaped keys on the Node in use', () => {
  it.each(triggers)('$name', ({ poison, probe, key }) => {
    const script = `JSON.parse(process.argv[1]); process.stdout.write(JSON.stringify(Object.keys(JSON.parse(process.argv[2]))));`;
    const keys = JSON.parse(
      execFileSync(process.execPath, ['-e', script, poison, probe], { encoding: 'utf8' }),
    ) as string[];
    expect(keys).toContain(key);
    // Without the poison the same probe is read right everywhere: the trigger is the earlier parse.
    const alone = JSON.parse(
      execFileSync(
        process.execPath,
        ['-e', `process.stdout.write(JSON.stringify(Object.keys(JSON.parse(process.argv[1]))))`, probe],
        { encoding: 'utf8' },
      ),
    ) as string[];
    expect(alone).toContain(key);
  });
});
