import { describe, expect, it } from 'vitest';
import {
  PCAP_HEADER_BYTES,
  RECORD_HEADER_BYTES,
  framePcap,
  parsePcapHeader,
  parseTcpdumpStats,
} from '../../../src/collector/capture.js';

function header(linkType = 113, snaplen = 262144): Buffer {
  const b = Buffer.alloc(PCAP_HEADER_BYTES);
  b.writeUInt32LE(0xa1b2c3d4, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(linkType, 20);
  return b;
}

function record(payload: Buffer, included = payload.length): Buffer {
  const h = Buffer.alloc(RECORD_HEADER_BYTES);
  h.writeUInt32LE(1, 0);
  h.writeUInt32LE(included, 8);
  h.writeUInt32LE(payload.length, 12);
  return Buffer.concat([h, payload]);
}

/** The same bytes in chunks of every size, to cut records at every possible place. */
async function frame(bytes: Buffer, chunk: number, cap: number) {
  let capped = 0;
  const source = (async function* () {
    for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
  })();
  const { stream, outcome } = framePcap(source, cap, () => capped++);
  const out: Buffer[] = [];
  for await (const c of stream) out.push(c);
  return { out: Buffer.concat(out), outcome, capped };
}

describe('pcap framing', () => {
  const packets = [Buffer.alloc(60, 1), Buffer.alloc(1500, 2), Buffer.alloc(0), Buffer.alloc(300, 3)];
  const whole = Buffer.concat([header(), ...packets.map((p) => record(p))]);

  it('passes whole records through, however the stream is chunked', async () => {
    for (const chunk of [1, 7, 16, 24, 100, 4096]) {
      const { out, outcome, capped } = await frame(whole, chunk, 1 << 20);
      expect(out.equals(whole)).toBe(true);
      expect(outcome).toMatchObject({ packets: 4, bytes: whole.length, truncated: false, partialTail: 0 });
      expect(capped).toBe(0);
    }
  });

  it('ends at the last packet that fits under the cap, never inside one', async () => {
    const cap = PCAP_HEADER_BYTES + 2 * RECORD_HEADER_BYTES + 60 + 1500 - 1; // one byte short of two
    for (const chunk of [1, 13, 4096]) {
      const { out, outcome, capped } = await frame(whole, chunk, cap);
      expect(out.equals(Buffer.concat([header(), record(packets[0]!)]))).toBe(true);
      expect(outcome).toMatchObject({ packets: 1, truncated: true });
      expect(out.length).toBeLessThanOrEqual(cap);
      expect(capped).toBe(1);
    }
  });

  it('stores exactly up to a cap that ends on a packet boundary', async () => {
    const cap = PCAP_HEADER_BYTES + 2 * RECORD_HEADER_BYTES + 60 + 1500;
    const { outcome } = await frame(whole, 64, cap);
    // Even an empty packet's record header would pass the cap.
    expect(outcome).toMatchObject({ packets: 2, bytes: cap, truncated: true });
  });

  it('drops an incomplete last record and says how many bytes it had', async () => {
    const cut = whole.subarray(0, whole.length - 10);
    const { out, outcome } = await frame(cut, 50, 1 << 20);
    expect(outcome).toMatchObject({ packets: 3, partialTail: RECORD_HEADER_BYTES + 300 - 10 });
    expect(out.length).toBe(whole.length - RECORD_HEADER_BYTES - 300);
  });

  it('stops at a record longer than the snapshot length, and at a stream that is not pcap', async () => {
    const bad = Buffer.concat([header(113, 1000), record(packets[0]!), record(Buffer.alloc(10), 5000)]);
    const { outcome, capped } = await frame(bad, 4096, 1 << 20);
    expect(outcome.packets).toBe(1);
    expect(outcome.malformed).toMatch(/5000 bytes/);
    expect(capped).toBe(1);
    const notPcap = await frame(Buffer.from('tcpdump: eth0: No such device exists\n'), 4096, 1 << 20);
    expect(notPcap.outcome.malformed).toMatch(/not a pcap stream/);
    expect(notPcap.out.length).toBe(0);
  });

  it('reads the header in both byte orders', () => {
    expect(parsePcapHeader(header(276, 65535))).toMatchObject({
      littleEndian: true,
      linkType: 276,
      snaplen: 65535,
    });
    const be = Buffer.alloc(24);
    be.writeUInt32BE(0xa1b23c4d, 0);
    be.writeUInt32BE(1, 20);
    expect(parsePcapHeader(be)).toMatchObject({ littleEndian: false, nanoseconds: true, linkType: 1 });
  });

  it("reads tcpdump's closing counts", () => {
    expect(
      parseTcpdumpStats(
        'tcpdump: listening on any\n12 packets captured\n14 packets received by filter\n2 packets dropped by kernel\n',
      ),
    ).toEqual({ captured: 12, received: 14, dropped: 2 });
    expect(parseTcpdumpStats('1 packet captured\n')).toEqual({ captured: 1 });
  });
});
