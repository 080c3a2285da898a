import { describe, expect, it } from 'vitest';
import { readLines } from '../../../src/runtime/informer.js';

const stream = (chunks: Uint8Array[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });

async function lines(chunks: Uint8Array[]): Promise<string[]> {
  const out: string[] = [];
  await readLines(stream(chunks), (line) => out.push(line));
  return out;
}

describe('readLines (the watch stream)', () => {
  it('splits events on newlines wherever the chunks happen to end', async () => {
    const text = '{"type":"ADDED","object":{"n":"é€𝄞"}}\n\n{"type":"BOOKMARK"}\n';
    const bytes = new TextEncoder().encode(text);
    const whole = await lines([bytes]);
    expect(whole).toEqual(['{"type":"ADDED","object":{"n":"é€𝄞"}}', '{"type":"BOOKMARK"}']);
    // Every split point, including inside a multi-byte character and right at the newline.
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(await lines([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(whole);
    }
    // One byte at a time.
    expect(await lines([...bytes].map((b) => Uint8Array.of(b)))).toEqual(whole);
  });

  it('drops an unterminated last line (the watch was cut mid-event) and an empty body', async () => {
    expect(await lines([new TextEncoder().encode('{"type":"ADDED"}\n{"type":"MOD')])).toEqual([
      '{"type":"ADDED"}',
    ]);
    expect(await lines([])).toEqual([]);
    await readLines(null, () => expect.unreachable());
  });
});
