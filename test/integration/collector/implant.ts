import { staticProgram } from '../../testenv/rootfs.js';

/**
 * What an intruder's dropped binary does that busybox cannot: holds a payload in a memfd (a
 * file that exists only in memory) and keeps a marker string on its heap. Static, because the
 * test image has no libc.
 */
export const heapMarker = 'HEAP-MARKER-4242-amber';
export const memfdPayload = 'MEMFD-PAYLOAD-amber-test\n';

export function implantBinary(): string {
  return staticProgram(
    'implant',
    `#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

char *keep;

int main(void) {
  int fd = memfd_create("payload", 0);
  const char *payload = "MEMFD-PAYLOAD-amber-test\\n";
  if (fd < 0 || write(fd, payload, strlen(payload)) < 0) return 1;
  keep = malloc(64);
  snprintf(keep, 64, "HEAP-MARKER-%d-amber", 4242);
  for (;;) pause();
}
`,
  );
}
