import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { MemoryMap } from './procfs.js';
import { errorMessage } from './report.js';

const CHUNK = 1024 * 1024;

/** Kernel-provided pages that cannot be read through /proc/<pid>/mem (or mean nothing there). */
const unreadable = new Set(['[vvar]', '[vvar_vclock]', '[vsyscall]']);

export interface DumpedRegion {
  start: string;
  end: string;
  perms: string;
  path: string;
  /** Where the region's bytes begin in the dump file. */
  fileOffset: number;
  bytes: number;
  /** Why the region is missing or cut short. */
  gap?: string;
}

export function dumpableRegions(maps: MemoryMap[]): MemoryMap[] {
  return maps.filter((m) => m.perms.startsWith('r') && !unreadable.has(m.path));
}

/**
 * A process's readable memory as one stream: the regions of `maps` one after the other, read
 * from /proc/<pid>/mem a chunk at a time (so memory stays constant). `index` tells where each
 * region landed in the stream and what could not be read; it is complete once the stream ends.
 */
export function memoryDump(
  procRoot: string,
  pid: number,
  maps: MemoryMap[],
  maxBytes: number,
  signal?: AbortSignal,
): { stream: Readable; index: DumpedRegion[] } {
  const index: DumpedRegion[] = [];
  async function* generate(): AsyncGenerator<Buffer> {
    let handle: FileHandle;
    try {
      handle = await open(join(procRoot, String(pid), 'mem'), 'r');
    } catch (err) {
      index.push({
        start: '0',
        end: '0',
        perms: '',
        path: '',
        fileOffset: 0,
        bytes: 0,
        gap: `cannot open mem: ${errorMessage(err)}`,
      });
      return;
    }
    let written = 0;
    try {
      for (const m of dumpableRegions(maps)) {
        const region: DumpedRegion = {
          start: m.start.toString(16),
          end: m.end.toString(16),
          perms: m.perms,
          path: m.path,
          fileOffset: written,
          bytes: 0,
        };
        index.push(region);
        const length = Number(m.end - m.start);
        if (written + length > maxBytes) {
          region.gap = `skipped: ${length} bytes would exceed the memory cap of ${maxBytes}`;
          continue;
        }
        for (let off = 0; off < length; off += CHUNK) {
          if (signal?.aborted) {
            region.gap = `deadline reached at +${off}`;
            return;
          }
          const len = Math.min(CHUNK, length - off);
          const buf = Buffer.allocUnsafe(len);
          let n: number;
          try {
            ({ bytesRead: n } = await handle.read(buf, 0, len, Number(m.start) + off));
          } catch (err) {
            region.gap = `read failed at +${off}: ${errorMessage(err)}`;
            break;
          }
          if (n === 0) {
            region.gap = `unmapped at +${off} (the process changed its memory or exited)`;
            break;
          }
          region.bytes += n;
          written += n;
          yield n === len ? buf : buf.subarray(0, n);
          if (n < len) {
            region.gap = `short read at +${off + n}`;
            break;
          }
        }
      }
    } finally {
      await handle.close();
    }
  }
  return { stream: Readable.from(generate()), index };
}
