import { readFileSync } from 'node:fs';

/**
 * Amber's version, from package.json: the one place it is written. Both src/ and dist/ sit two
 * levels below the package root (src/observability/, dist/observability/), and the image copies
 * package.json next to dist/.
 */
export const amberVersion: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
