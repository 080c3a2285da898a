/** A pcap reader for the tests: no dependency, only what they check. */
/** One packet of a pcap, as far as the tests need: transport, ports, payload. */
export interface Packet {
  proto: 'tcp' | 'udp' | 'other';
  src?: number;
  dst?: number;
  payload: Buffer;
}

/**
 * A small pcap reader (classic format, the link types tcpdump gives for `-i any` and Ethernet).
 * Throws on anything that does not end exactly at a record boundary.
 */
export function readPcap(b: Buffer): { linkType: number; packets: Packet[] } {
  const le = b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const linkType = u32(20);
  const packets: Packet[] = [];
  let at = 24;
  while (at < b.length) {
    if (at + 16 > b.length) throw new Error(`a record header cut at ${at}`);
    const len = u32(at + 8);
    if (at + 16 + len > b.length) throw new Error(`a record cut at ${at}`);
    packets.push(parsePacket(b.subarray(at + 16, at + 16 + len), linkType));
    at += 16 + len;
  }
  return { linkType, packets };
}

function parsePacket(p: Buffer, linkType: number): Packet {
  let ethertype: number;
  let ip: Buffer;
  if (linkType === 113)
    [ethertype, ip] = [p.readUInt16BE(14), p.subarray(16)]; // LINUX_SLL
  else if (linkType === 276)
    [ethertype, ip] = [p.readUInt16BE(0), p.subarray(20)]; // LINUX_SLL2
  else if (linkType === 1)
    [ethertype, ip] = [p.readUInt16BE(12), p.subarray(14)]; // Ethernet
  else throw new Error(`link type ${linkType}`);
  if (ethertype !== 0x0800 || ip.length < 20) return { proto: 'other', payload: Buffer.alloc(0) };
  const ihl = (ip[0]! & 0x0f) * 4;
  const total = ip.readUInt16BE(2);
  const l4 = ip.subarray(ihl, total);
  if (ip[9] === 6) {
    const off = (l4[12]! >> 4) * 4;
    return { proto: 'tcp', src: l4.readUInt16BE(0), dst: l4.readUInt16BE(2), payload: l4.subarray(off) };
  }
  if (ip[9] === 17)
    return { proto: 'udp', src: l4.readUInt16BE(0), dst: l4.readUInt16BE(2), payload: l4.subarray(8) };
  return { proto: 'other', payload: Buffer.alloc(0) };
}
