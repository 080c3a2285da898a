import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCaseId } from './names.js';

/** Where a sealed case lives, as `amber verify` is given it. The case id is the last segment. */
export type CaseLocation =
  | { kind: 's3'; bucket: string; prefix: string; caseId: string }
  | { kind: 'local'; root: string; caseId: string };

/**
 * Parses `s3://bucket/prefix/case`, `file:///dir/case` or a plain directory path. The store
 * holding the case is everything before the last segment (bucket + prefix, or the parent
 * directory), so the same store code reads it back.
 */
export function parseCaseLocation(location: string): CaseLocation {
  if (location.startsWith('s3://')) {
    const segments = location.slice('s3://'.length).split('/').filter(Boolean);
    const bucket = segments.shift();
    const caseId = segments.pop();
    if (!bucket || !caseId) {
      throw new Error(`invalid S3 case location "${location}": expected s3://bucket/[prefix/]case`);
    }
    return { kind: 's3', bucket, prefix: segments.join('/'), caseId: parseCaseId(caseId) };
  }
  const path = location.startsWith('file://') ? fileURLToPath(location) : location;
  const dir = resolve(path);
  return { kind: 'local', root: dirname(dir), caseId: parseCaseId(basename(dir)) };
}
