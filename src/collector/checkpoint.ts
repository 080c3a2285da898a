/**
 * The kubelet's checkpoint archive (ADR 0023): which file is the one the kubelet named, and what
 * the archive says about the container, in checkpointctl's terms (its config, its OCI spec, what
 * the archive holds, the process tree CRIU dumped).
 *
 * The archive was written on a node the suspect may own, so it is parsed as hostile input: a
 * bounded number of entries, bounded reads of the few files that are parsed, nothing written
 * to disk, and names from the archive are only ever reported, never used as paths.
 */
import { posix } from 'node:path';
import { extract as tarExtract } from 'tar-stream';
import { parseCheckpointName } from './logs.js';

/** What the collector is told about the container's checkpoint (the operator asked the kubelet). */
export type CheckpointRequest = { archive: string } | { refused: string };

export interface ArchiveExpectation {
  /** The kubelet's checkpoints directory, as the kubelet sees the node (no host-root prefix). */
  root: string;
  namespace: string;
  pod: string;
  container: string;
}

/**
 * The kubelet's answer names the archive; it is accepted only as a file directly in the
 * kubelet's checkpoints directory, named as the kubelet names this container's archives
 * (`checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar`). Anything else (another
 * directory, a `..`, a name of another pod or container) is refused with the reason.
 */
export function checkArchivePath(
  path: unknown,
  want: ArchiveExpectation,
): { path: string; file: string } | { refused: string } {
  if (typeof path !== 'string' || path.length === 0) return { refused: 'the archive path is not a string' };
  if (path.length > 4096 || path.includes('\0')) return { refused: 'the archive path is malformed' };
  const shown = JSON.stringify(path.slice(0, 300));
  const root = posix.normalize(want.root).replace(/(.)\/+$/, '$1');
  if (!path.startsWith('/')) return { refused: `${shown} is not an absolute path` };
  const parts = path.split('/').slice(1);
  if (parts.some((p) => p === '..' || p === '.' || p === ''))
    return { refused: `${shown} has an empty, "." or ".." component` };
  if (posix.dirname(path) !== root) return { refused: `${shown} is not directly in ${root}` };
  const file = posix.basename(path);
  const m = parseCheckpointName(file, want.pod, want.namespace, [want.container]);
  if (!m.match)
    return {
      refused: `${shown} is not named as the kubelet names a checkpoint of ${want.namespace}/${want.pod} container ${want.container}`,
    };
  return { path, file };
}

/** Caps on what is read out of one archive. */
export interface SummaryLimits {
  /** Entries listed (the rest are counted). */
  maxEntries: number;
  /** config.dump and spec.dump are parsed only up to this size. */
  maxJsonBytes: number;
  /** pstree.img and each core-*.img are parsed only up to this size. */
  maxImageBytes: number;
  /** core-*.img files parsed (one per process). */
  maxProcesses: number;
  /** All the bytes held for parsing at once (the JSON and CRIU images together). */
  maxHeldBytes: number;
}

export const defaultSummaryLimits: SummaryLimits = {
  maxEntries: 10_000,
  maxJsonBytes: 1024 * 1024,
  maxImageBytes: 4 * 1024 * 1024,
  maxProcesses: 4096,
  maxHeldBytes: 64 * 1024 * 1024,
};

export interface ArchiveEntry {
  name: string;
  size: number;
  type: string;
}

export interface CheckpointProcess {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  /** The task's comm (at most 16 bytes in the kernel), from core-<pid>.img. */
  comm?: string;
}

/** What checkpointctl shows of an archive, as far as this summary reads it. */
export interface CheckpointSummary {
  /** config.dump: the container's metadata as the runtime recorded it (checkpointctl "show"). */
  config?: unknown;
  /** spec.dump: the container's OCI runtime spec. */
  spec?: unknown;
  /** Every entry, up to the cap. */
  entries: ArchiveEntry[];
  entriesTotal: number;
  /** Bytes by top-level part: checkpoint/ (CRIU images), rootfs-diff.tar, and the rest. */
  sizes: Record<string, number>;
  /** The process tree from checkpoint/pstree.img, each with its comm from checkpoint/core-<pid>.img. */
  processes: CheckpointProcess[];
  /** What could not be read, and why. */
  problems: string[];
  /** What this summary never reads (the investigator uses checkpointctl or crit on the archive). */
  notRead: string;
}

const NOT_READ =
  'memory pages (pages-*.img), open files, sockets and mounts of the CRIU images, rootfs-diff.tar contents: ' +
  'read them from the sealed archive with checkpointctl or crit';

/**
 * Reads an archive as it streams past (a tee of the bytes stored and hashed), so the summary
 * describes exactly what was sealed. `write` never throws; a malformed archive ends the summary
 * with a recorded problem and the stream goes on to the store untouched.
 */
export class CheckpointSummarizer {
  private readonly summary: CheckpointSummary = {
    entries: [],
    entriesTotal: 0,
    sizes: {},
    processes: [],
    problems: [],
    notRead: NOT_READ,
  };
  private readonly pstree: Buffer[] = [];
  private readonly cores = new Map<number, Buffer>();
  private readonly extract = tarExtract();
  private failed = false;
  private readonly done: Promise<void>;

  constructor(private readonly limits: SummaryLimits = defaultSummaryLimits) {
    this.done = this.consume().catch((err: unknown) => {
      this.failed = true;
      this.problem(`not a readable tar archive: ${(err as Error).message}`);
    });
  }

  private async consume(): Promise<void> {
    for await (const entry of this.extract) {
      const { header } = entry;
      const s = this.summary;
      s.entriesTotal++;
      const name = header.name.replace(/^\.\//, '');
      const size = header.size ?? 0;
      // A pax header can make a name megabytes long: listed cut, never used as a path.
      if (s.entries.length < this.limits.maxEntries)
        s.entries.push({ name: name.slice(0, 4096), size, type: header.type ?? 'file' });
      const part = name.startsWith('checkpoint/') ? 'checkpoint' : name;
      const key = ['checkpoint', 'rootfs-diff.tar', 'config.dump', 'spec.dump'].includes(part)
        ? part
        : 'other';
      s.sizes[key] = (s.sizes[key] ?? 0) + size;
      const wanted = this.wanted(name, size);
      const chunks: Buffer[] = [];
      for await (const c of entry) if (wanted) chunks.push(c as Buffer);
      if (!wanted) continue;
      try {
        wanted(Buffer.concat(chunks));
      } catch (err) {
        this.problem(`${name}: ${(err as Error).message}`);
      }
    }
  }

  /** Feeds the next bytes of the archive; waits while the parser is behind. */
  async write(chunk: Buffer): Promise<void> {
    if (this.failed) return;
    if (!this.extract.write(chunk))
      await Promise.race([
        new Promise<void>((resolve) => this.extract.once('drain', () => resolve())),
        this.done,
      ]);
  }

  /** The summary once the whole archive went past (or what was read when it was cut short). */
  async finish(truncated: boolean): Promise<CheckpointSummary> {
    if (truncated) this.problem('the archive was cut at its cap: the summary covers its first part only');
    if (!this.failed) {
      this.extract.end(null);
      await this.done;
    }
    this.buildProcesses();
    return this.summary;
  }

  private problem(text: string): void {
    if (this.summary.problems.length < 100) this.summary.problems.push(text.slice(0, 500));
  }

  /** What to do with an entry's bytes, if it is one the summary reads and within its cap. */
  private wanted(name: string, size: number): ((b: Buffer) => void) | undefined {
    const take = this.wantedEntry(name, size);
    if (!take) return undefined;
    // One budget for everything held: 4096 core images of 4 MiB each would otherwise be 16 GiB
    // (attacker review; only root on the node can build such an archive, still never unbounded).
    if (this.heldBytes + size > this.limits.maxHeldBytes) {
      this.problem(
        `${name}: over the ${this.limits.maxHeldBytes} bytes the summary holds at once: not parsed`,
      );
      return undefined;
    }
    this.heldBytes += size;
    return take;
  }

  private heldBytes = 0;

  private wantedEntry(name: string, size: number): ((b: Buffer) => void) | undefined {
    const { maxJsonBytes, maxImageBytes, maxProcesses } = this.limits;
    const json = (field: 'config' | 'spec') => {
      if (size > maxJsonBytes) {
        this.problem(`${name}: ${size} bytes, larger than the ${maxJsonBytes} read: not parsed`);
        return undefined;
      }
      return (b: Buffer) => {
        if (this.summary[field] !== undefined) throw new Error('appears twice: the first is kept');
        this.summary[field] = JSON.parse(b.toString('utf8'));
      };
    };
    if (name === 'config.dump') return json('config');
    if (name === 'spec.dump') return json('spec');
    if (name === 'checkpoint/pstree.img' || /^checkpoint\/core-\d+\.img$/.test(name)) {
      if (size > maxImageBytes) {
        this.problem(`${name}: ${size} bytes, larger than the ${maxImageBytes} read: not parsed`);
        return undefined;
      }
      if (name === 'checkpoint/pstree.img')
        return (b) => {
          if (this.pstree.length > 0) throw new Error('appears twice: the first is kept');
          this.pstree.push(b);
        };
      const pid = Number(/core-(\d+)/.exec(name)![1]);
      if (this.cores.size >= maxProcesses || this.cores.has(pid)) return undefined;
      return (b) => void this.cores.set(pid, b);
    }
    return undefined;
  }

  private buildProcesses(): void {
    const [pstree] = this.pstree;
    if (!pstree) {
      this.problem('no checkpoint/pstree.img: no process tree');
      return;
    }
    let tree: CheckpointProcess[];
    try {
      tree = parsePstree(pstree, this.limits.maxProcesses);
    } catch (err) {
      this.problem(`checkpoint/pstree.img: ${(err as Error).message}`);
      return;
    }
    for (const p of tree) {
      const core = this.cores.get(p.pid);
      if (!core) {
        this.problem(`no checkpoint/core-${p.pid}.img: no comm for pid ${p.pid}`);
        continue;
      }
      try {
        const comm = parseCoreComm(core);
        if (comm !== undefined) p.comm = comm;
      } catch (err) {
        this.problem(`checkpoint/core-${p.pid}.img: ${(err as Error).message}`);
      }
    }
    this.summary.processes = tree;
  }
}

// ---- CRIU images --------------------------------------------------------------------------
// An image is a magic (u32; most images put the common magic before their own) followed by
// entries, each a u32 little-endian length and a protobuf message (criu/images/*.proto). Only a
// few fields of two messages are read, so this reads the protobuf wire format directly.

const IMG_COMMON_MAGIC = 0x54564319;
const IMG_SERVICE_MAGIC = 0x55105940;
const PSTREE_MAGIC = 0x50273030;
const CORE_MAGIC = 0x55053847;

/** The protobuf messages of an image file whose own magic is `magic`. */
export function imageEntries(img: Buffer, magic: number, maxEntries: number): Buffer[] {
  if (img.length < 4) throw new Error('shorter than its magic');
  let off = 0;
  const first = img.readUInt32LE(0);
  if (first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC) off = 4;
  if (img.length < off + 4) throw new Error('shorter than its magic');
  const own = img.readUInt32LE(off);
  if (own !== magic) throw new Error(`magic 0x${own.toString(16)}, expected 0x${magic.toString(16)}`);
  off += 4;
  const out: Buffer[] = [];
  while (off < img.length) {
    if (out.length >= maxEntries) throw new Error(`more than ${maxEntries} entries`);
    if (off + 4 > img.length) throw new Error('an entry length is cut short');
    const len = img.readUInt32LE(off);
    off += 4;
    if (off + len > img.length) throw new Error(`an entry of ${len} bytes runs past the end`);
    out.push(img.subarray(off, off + len));
    off += len;
  }
  return out;
}

export type ProtoValue = bigint | Buffer;

function readVarint(buf: Buffer, r: { off: number }): bigint {
  let v = 0n;
  for (let shift = 0n; shift < 70n; shift += 7n) {
    if (r.off >= buf.length) throw new Error('a varint is cut short');
    const b = buf[r.off++]!;
    v |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return v;
  }
  throw new Error('a varint is too long');
}

/**
 * A protobuf message's fields by number: varints as bigint, length-delimited as bytes (packed
 * repeated fields and nested messages are decoded by the caller). Fixed32/64 are skipped.
 */
export function protoFields(msg: Buffer): Map<number, ProtoValue[]> {
  const fields = new Map<number, ProtoValue[]>();
  const r = { off: 0 };
  const varint = () => readVarint(msg, r);
  while (r.off < msg.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value: ProtoValue | undefined;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = Number(varint());
      if (r.off + len > msg.length) throw new Error('a field runs past the end of its message');
      value = msg.subarray(r.off, r.off + len);
      r.off += len;
    } else if (wire === 1) r.off += 8;
    else if (wire === 5) r.off += 4;
    else throw new Error(`wire type ${wire} is not supported`);
    if (r.off > msg.length) throw new Error('a field runs past the end of its message');
    if (field === 0) throw new Error('field number 0');
    if (value !== undefined) {
      const list = fields.get(field) ?? [];
      if (list.length < 65_536) list.push(value);
      fields.set(field, list);
    }
  }
  return fields;
}

function uint(fields: Map<number, ProtoValue[]>, n: number, what: string): number {
  const v = fields.get(n)?.[0];
  if (typeof v !== 'bigint') throw new Error(`${what} missing`);
  return Number(BigInt.asUintN(32, v));
}

/** Repeated uint32: packed (bytes holding a run of varints) or one varint per occurrence. */
function uints(fields: Map<number, ProtoValue[]>, n: number): number[] {
  const out: number[] = [];
  for (const v of fields.get(n) ?? []) {
    if (typeof v === 'bigint') out.push(Number(BigInt.asUintN(32, v)));
    else {
      const r = { off: 0 };
      while (r.off < v.length && out.length < 65_536) out.push(Number(BigInt.asUintN(32, readVarint(v, r))));
    }
  }
  return out;
}

/** pstree.img: one pstree_entry { pid = 1; ppid = 2; pgid = 3; sid = 4; repeated threads = 5 } per process. */
export function parsePstree(img: Buffer, maxProcesses: number): CheckpointProcess[] {
  return imageEntries(img, PSTREE_MAGIC, maxProcesses).map((e) => {
    const f = protoFields(e);
    return {
      pid: uint(f, 1, 'pid'),
      ppid: uint(f, 2, 'ppid'),
      pgid: uint(f, 3, 'pgid'),
      sid: uint(f, 4, 'sid'),
      threads: uints(f, 5).slice(0, 1024),
    };
  });
}

/** core-<pid>.img: core_entry { tc = 3: task_core_entry { comm = 6 } }. */
export function parseCoreComm(img: Buffer): string | undefined {
  const [entry] = imageEntries(img, CORE_MAGIC, 1);
  if (!entry) throw new Error('no core entry');
  const tc = protoFields(entry).get(3)?.[0];
  if (!Buffer.isBuffer(tc)) return undefined;
  const comm = protoFields(tc).get(6)?.[0];
  return Buffer.isBuffer(comm) ? comm.subarray(0, 64).toString('utf8') : undefined;
}
