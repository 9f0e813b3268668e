import { writeSync } from 'node:fs';

/**
 * Writes a line to a file descriptor synchronously, so it is out before the process can be killed. A
 * pipe to a busy parent is non-blocking and may be full: EAGAIN is retried until the parent drains it.
 */
export function sayTo(fd: number, line: string): void {
  const buf = Buffer.from(`${line}\n`);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}
