import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `get` until `ok` holds for its value; fails with the last value seen. */
export async function waitFor<T>(
  what: string,
  get: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      last = await get();
      if (ok(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    await sleep(50);
  }
  throw new Error(
    `timed out waiting for ${what}; last value: ${JSON.stringify(last)?.slice(0, 2000)} ${lastErr ? `error: ${String(lastErr)}` : ''}`,
  );
}
