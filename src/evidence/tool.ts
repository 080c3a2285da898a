import { readFileSync } from 'node:fs';

/**
 * Amber's version, as the chain of custody names the tool that handled the evidence. Read from
 * package.json, which sits two levels above this file in the source tree and in the image.
 */
export const AMBER_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
})();
