/**
 * The suspect pod's traffic, captured from inside its network namespace (ADR 0024).
 *
 * tcpdump (Debian's) does the capturing, entered into the pod's namespace by nsenter the way the
 * connection cut enters the host's (conntrack.ts). The namespace is opened here first and handed
 * to nsenter as a descriptor, after its inode was checked against the one the container's init
 * showed: a recycled PID cannot make us capture another namespace.
 *
 * tcpdump's own limits are not trusted to hold: a suspect can flood. Its pcap stream on stdout
 * is read here, split into records, and passed on whole records only while they fit under the
 * byte cap; the first record that would not fit ends the capture (tcpdump is killed), so the
 * artifact always ends at a packet boundary and its truncation is recorded. Time is ours too:
 * SIGTERM at the end of the window (tcpdump then flushes and prints its drop counts), SIGKILL
 * a little later, and if even that does not end the stream it is abandoned. A namespace that
 * vanishes mid-capture (the container exits) changes nothing of that: the clock still ends it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readlink, type FileHandle } from 'node:fs/promises';

/** A pcap file's global header, and the record header before every packet. */
export const PCAP_HEADER_BYTES = 24;
export const RECORD_HEADER_BYTES = 16;
/** tcpdump's default and largest snapshot length: a record longer than this is not pcap. */
export const MAX_SNAPLEN = 262_144;

/** How long tcpdump has to flush and exit after SIGTERM, and the stream after SIGKILL. */
export const GRACE_MS = 2_000;

export interface PcapHeader {
  littleEndian: boolean;
  nanoseconds: boolean;
  snaplen: number;
  linkType: number;
}

export function parsePcapHeader(b: Buffer): PcapHeader {
  if (b.length < PCAP_HEADER_BYTES)
    throw new Error(`a pcap header is ${PCAP_HEADER_BYTES} bytes, got ${b.length}`);
  const magics: Record<number, { littleEndian: boolean; nanoseconds: boolean }> = {
    0xa1b2c3d4: { littleEndian: false, nanoseconds: false },
    0xd4c3b2a1: { littleEndian: true, nanoseconds: false },
    0xa1b23c4d: { littleEndian: false, nanoseconds: true },
    0x4d3cb2a1: { littleEndian: true, nanoseconds: true },
  };
  const kind = magics[b.readUInt32BE(0)];
  if (!kind) throw new Error(`not a pcap stream (magic 0x${b.readUInt32BE(0).toString(16)})`);
  const u32 = (at: number) => (kind.littleEndian ? b.readUInt32LE(at) : b.readUInt32BE(at));
  return { ...kind, snaplen: u32(16), linkType: u32(20) & 0x0fffffff };
}

/** What the framing let through, and why it stopped. Final once its stream has ended. */
export interface FramingOutcome {
  header?: PcapHeader;
  packets: number;
  /** Bytes passed on: the global header and whole records. */
  bytes: number;
  /** A record did not fit under the cap: the stream ends before it. */
  truncated: boolean;
  /** Bytes of an incomplete last record that the source ended in (dropped, never stored). */
  partialTail: number;
  /** The source was not a well-formed pcap stream from some point on. */
  malformed?: string;
}

/**
 * Whole pcap records from `source`, never more than `maxBytes` in all. Stops at the first record
 * that would pass the cap (`onCap` is called, once) or that is not well formed. Memory: at most
 * one record and one chunk.
 */
export function framePcap(
  source: AsyncIterable<Buffer>,
  maxBytes: number,
  onCap: () => void,
): { stream: AsyncGenerator<Buffer>; outcome: FramingOutcome } {
  const outcome: FramingOutcome = { packets: 0, bytes: 0, truncated: false, partialTail: 0 };
  async function* generate(): AsyncGenerator<Buffer> {
    let pending: Buffer = Buffer.alloc(0);
    for await (const chunk of source) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const out: Buffer[] = [];
      let at = 0;
      if (!outcome.header) {
        if (pending.length < PCAP_HEADER_BYTES) continue;
        try {
          outcome.header = parsePcapHeader(pending);
        } catch (err) {
          outcome.malformed = (err as Error).message;
          onCap();
          return;
        }
        if (PCAP_HEADER_BYTES > maxBytes) {
          outcome.truncated = true;
          onCap();
          return;
        }
        out.push(pending.subarray(0, PCAP_HEADER_BYTES));
        outcome.bytes += PCAP_HEADER_BYTES;
        at = PCAP_HEADER_BYTES;
      }
      const h = outcome.header;
      let stop = false;
      while (pending.length - at >= RECORD_HEADER_BYTES) {
        const included = h.littleEndian ? pending.readUInt32LE(at + 8) : pending.readUInt32BE(at + 8);
        if (included > Math.max(h.snaplen, 1) || included > MAX_SNAPLEN) {
          outcome.malformed = `record ${outcome.packets + 1} claims ${included} bytes, more than the snapshot length ${h.snaplen}`;
          stop = true;
          break;
        }
        const len = RECORD_HEADER_BYTES + included;
        if (pending.length - at < len) break;
        if (outcome.bytes + len > maxBytes) {
          outcome.truncated = true;
          stop = true;
          break;
        }
        out.push(pending.subarray(at, at + len));
        outcome.bytes += len;
        outcome.packets += 1;
        at += len;
      }
      if (out.length > 0) yield Buffer.concat(out);
      if (stop) {
        onCap();
        return;
      }
      // Keep only the unfinished record; copy it so the chunk it came from can be freed.
      pending = at === pending.length ? Buffer.alloc(0) : Buffer.from(pending.subarray(at));
    }
    outcome.partialTail = pending.length;
  }
  return { stream: generate(), outcome };
}

/** tcpdump's closing lines on stderr (after SIGTERM): what the kernel saw and dropped. */
export function parseTcpdumpStats(stderr: string): {
  captured?: number;
  received?: number;
  dropped?: number;
} {
  const n = (re: RegExp) => {
    const m = re.exec(stderr);
    return m ? Number(m[1]) : undefined;
  };
  const out: { captured?: number; received?: number; dropped?: number } = {};
  const captured = n(/(\d+) packets? captured/);
  const received = n(/(\d+) packets? received by filter/);
  const dropped = n(/(\d+) packets? dropped by kernel/);
  if (captured !== undefined) out.captured = captured;
  if (received !== undefined) out.received = received;
  if (dropped !== undefined) out.dropped = dropped;
  return out;
}

export interface CaptureOptions {
  /** The suspect's network namespace, e.g. /proc/<init>/ns/net. */
  netnsPath: string;
  /** `net:[inode]` as the container's init showed it: the namespace opened must be that one. */
  expectedNetns?: string;
  maxBytes: number;
  durationMs: number;
  /** Ends the capture early (the run's deadline). */
  signal?: AbortSignal;
  nsenter?: string;
  tcpdump?: string;
}

export type CaptureEnd = 'time' | 'byte cap' | 'aborted' | 'tcpdump exited' | 'malformed output';

/** What capture.json records about one capture. */
export interface CaptureSummary {
  tool: string;
  interface: 'any';
  netns?: string;
  startedAt: string;
  endedAt?: string;
  endedBy?: CaptureEnd;
  linkType?: number;
  snaplen?: number;
  packets: number;
  bytes: number;
  maxBytes: number;
  durationMs: number;
  truncated: boolean;
  partialTailBytes: number;
  malformed?: string;
  /** tcpdump did not end after SIGKILL: its stream was abandoned. */
  abandoned: boolean;
  exit?: { code: number | null; signal: string | null };
  kernel?: { captured?: number; received?: number; dropped?: number };
  /** The first 8 KiB of tcpdump's messages. */
  stderr: string;
}

export interface RunningCapture {
  /** Whole pcap records; ends when the capture does. Must be consumed (it is the artifact). */
  stream: AsyncGenerator<Buffer>;
  /** Settles once the stream has ended and tcpdump is gone (or abandoned); never rejects. */
  done: Promise<CaptureSummary>;
}

const STDERR_CAP = 8 * 1024;

/**
 * Starts tcpdump in the namespace and returns its framed stream. Throws only when the capture
 * cannot start (the namespace is gone or is not the expected one); everything after that is in
 * the summary.
 */
export async function startCapture(opts: CaptureOptions): Promise<RunningCapture> {
  const ns = await openNetns(opts.netnsPath, opts.expectedNetns);
  const tool = opts.tcpdump ?? 'tcpdump';
  const summary: CaptureSummary = {
    tool,
    interface: 'any',
    netns: ns.id,
    startedAt: new Date().toISOString(),
    packets: 0,
    bytes: 0,
    maxBytes: opts.maxBytes,
    durationMs: opts.durationMs,
    truncated: false,
    partialTailBytes: 0,
    abandoned: false,
    stderr: '',
  };
  let child: ChildProcess;
  try {
    // -U writes each packet as it comes, --immediate-mode hands it over without the kernel's
    // block timeout, -n never resolves a name (no DNS query from the suspect's namespace).
    child = spawn(
      opts.nsenter ?? 'nsenter',
      [
        `--net=/proc/self/fd/3`,
        '--',
        tool,
        '-i',
        'any',
        '-n',
        '-U',
        '--immediate-mode',
        '-s',
        String(MAX_SNAPLEN),
        '-w',
        '-',
      ],
      { stdio: ['ignore', 'pipe', 'pipe', ns.handle.fd] },
    );
  } finally {
    // The child holds its own copy of the descriptor.
    await ns.handle.close();
  }
  const stdout = child.stdout!;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      summary.exit = { code, signal };
      resolve();
    });
    child.once('error', (err) => {
      summary.stderr += `${err.message}\n`;
      resolve();
    });
  });
  child.stderr!.on('data', (d: Buffer) => {
    if (summary.stderr.length < STDERR_CAP)
      summary.stderr += d.toString('utf8').slice(0, STDERR_CAP - summary.stderr.length);
  });

  const timers: NodeJS.Timeout[] = [];
  let ending = false;
  /** SIGTERM now, SIGKILL after the grace, and the stream abandoned after another. */
  const end = (why: CaptureEnd, hard = false) => {
    if (ending) return;
    ending = true;
    summary.endedBy = why;
    child.kill(hard ? 'SIGKILL' : 'SIGTERM');
    timers.push(setTimeout(() => child.kill('SIGKILL'), hard ? 0 : GRACE_MS).unref());
    timers.push(
      setTimeout(
        () => {
          summary.abandoned = true;
          stdout.destroy();
          // Whether or not anyone still reads the stream (a store that failed stops reading).
          void finish();
        },
        (hard ? 0 : GRACE_MS) + GRACE_MS,
      ).unref(),
    );
  };
  timers.push(setTimeout(() => end('time'), opts.durationMs).unref());
  const onAbort = () => end('aborted');
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  // A flood past the cap is not worth a graceful stop: the rest would be thrown away.
  const framed = framePcap(tolerantRead(stdout), opts.maxBytes, () => end('byte cap', true));
  let resolveDone!: (s: CaptureSummary) => void;
  const done = new Promise<CaptureSummary>((r) => (resolveDone = r));
  let finishing: Promise<void> | undefined;
  const finish = () => (finishing ??= settle());
  const settle = async () => {
    // The stream ended: tcpdump exited (or was killed), or its stdout was abandoned.
    if (!ending) end('tcpdump exited');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2 * GRACE_MS).unref())]);
    for (const t of timers) clearTimeout(t);
    opts.signal?.removeEventListener('abort', onAbort);
    const o = framed.outcome;
    if (o.malformed) summary.endedBy = 'malformed output';
    Object.assign(summary, {
      endedAt: new Date().toISOString(),
      packets: o.packets,
      bytes: o.bytes,
      truncated: o.truncated,
      partialTailBytes: o.partialTail,
      ...(o.malformed && { malformed: o.malformed }),
      ...(o.header && { linkType: o.header.linkType, snaplen: o.header.snaplen }),
    });
    const stats = parseTcpdumpStats(summary.stderr);
    if (Object.keys(stats).length > 0) summary.kernel = stats;
    resolveDone(summary);
  };
  async function* stream(): AsyncGenerator<Buffer> {
    try {
      yield* framed.stream;
    } finally {
      // Whoever stops reading (the store failed) also stops tcpdump.
      if (!ending) end('aborted', true);
      stdout.destroy();
      await finish();
    }
  }
  return { stream: stream(), done };
}

/** A destroyed stdout (abandoned) ends the iteration instead of throwing. */
async function* tolerantRead(stdout: NodeJS.ReadableStream): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stdout) yield chunk as Buffer;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  }
}

/** Opens the namespace file and checks it is the one the container's init was seen in. */
async function openNetns(
  path: string,
  expected: string | undefined,
): Promise<{ handle: FileHandle; id: string }> {
  const handle = await open(path, 'r');
  try {
    const st = await handle.stat();
    const id = `net:[${st.ino}]`;
    if (expected && id !== expected)
      throw new Error(`${path} is ${id}, not the container's ${expected} (its process was replaced)`);
    return { handle, id };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** `net:[inode]` of a process, or undefined when it cannot be read. */
export function netnsOf(procRoot: string, pid: number): Promise<string | undefined> {
  return readlink(`${procRoot}/${pid}/ns/net`).catch(() => undefined);
}

export interface PacketCaptureRequest {
  procRoot: string;
  /** The container's init: its network namespace is the pod's. */
  initPid: number;
  /** A process in the host's namespaces: a pod on the host's network is not captured. */
  hostReferencePid: number;
  maxBytes: number;
  durationMs: number;
  /** Where the artifacts go, relative to the container's prefix. */
  name?: string;
}

/**
 * The collector's packet-capture group: started before the slow groups and awaited after them.
 * Stores network/capture.pcap (whole packets, under the cap) and network/capture.json (how it
 * ended, what tcpdump and the kernel said); every shortfall is in the report. Never rejects.
 */
export async function capturePackets(
  run: {
    put(name: string, body: AsyncIterable<Buffer>, group: string, contentType?: string): Promise<unknown>;
    json(name: string, value: unknown, group: string): Promise<unknown>;
    gap(what: string, err: unknown): void;
    skip(what: string, reason: string): void;
  },
  req: PacketCaptureRequest,
  signal?: AbortSignal,
): Promise<void> {
  const name = req.name ?? 'network/capture.pcap';
  const netns = await netnsOf(req.procRoot, req.initPid);
  if (!netns) {
    run.gap(
      name,
      `the container's network namespace (/proc/${req.initPid}/ns/net) cannot be read: it exited`,
    );
    return;
  }
  if (netns === (await netnsOf(req.procRoot, req.hostReferencePid))) {
    run.skip(
      name,
      "the pod uses the host's network namespace: a capture there would be the whole node's traffic",
    );
    return;
  }
  let capture: RunningCapture;
  try {
    capture = await startCapture({
      netnsPath: `${req.procRoot}/${req.initPid}/ns/net`,
      expectedNetns: netns,
      maxBytes: req.maxBytes,
      durationMs: req.durationMs,
      ...(signal && { signal }),
    });
  } catch (err) {
    run.gap(name, err);
    return;
  }
  // No artifact when tcpdump never wrote its header (it could not start): only the gap.
  const first = await capture.stream.next().catch((err: unknown) => ({ done: true as const, err }));
  if (!first.done) {
    const rest = capture.stream;
    await run.put(
      name,
      (async function* () {
        yield first.value;
        yield* rest;
      })(),
      'network/capture',
      'application/vnd.tcpdump.pcap',
    );
  }
  // Ends the capture if the store stopped reading it early (a failed upload); else a no-op.
  await capture.stream.return(undefined);
  const s = await capture.done;
  if (s.bytes === 0) {
    run.gap(
      name,
      `tcpdump wrote no capture (exit ${JSON.stringify(s.exit)}): ${s.stderr.trim().slice(0, 500)}`,
    );
  }
  if (s.truncated)
    run.skip(
      name,
      `truncated at the byte cap of ${s.maxBytes} bytes: ${s.packets} whole packets (${s.bytes} bytes) stored, the capture stopped at the next packet`,
    );
  if (s.malformed)
    run.gap(name, `tcpdump's output stopped being pcap: ${s.malformed}; the packets before are stored`);
  if (s.partialTailBytes > 0)
    run.gap(
      name,
      `the last ${s.partialTailBytes} bytes were an incomplete packet when tcpdump ended: not stored`,
    );
  if (s.abandoned) run.gap(name, `tcpdump did not end after SIGKILL: its output was abandoned`);
  if (s.kernel?.dropped)
    run.skip(name, `the kernel dropped ${s.kernel.dropped} packets the capture could not keep up with`);
  await run.json('network/capture.json', s, 'network/capture');
}
