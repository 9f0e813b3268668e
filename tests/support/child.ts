import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const TESTS = fileURLToPath(new URL('..', import.meta.url));

/**
 * A TypeScript script from tests/ in a child node process of its own (tsx loaded in-process, so a
 * SIGKILL hits the process doing the work), reading the workspace packages from source.
 */
export class ChildScript {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiters: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  private stderr = '';

  constructor(script: string, args: readonly string[]) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', '--conditions=@iommu-orch/source', script, ...args], { cwd: TESTS });
    this.proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      this.lines.push(line);
      for (const w of this.waiters.filter((x) => x.test(line))) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(line);
      }
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  /** The first line (already printed or still to come) that matches; rejects if the process exits first. */
  line(test: (line: string) => boolean): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.waiters.push({ test, resolve });
      void this.exited.then((code) => reject(new Error(`child exited (${code}) before the line came: ${this.stderr.trim()}`)));
    });
  }

  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.proc.kill(signal);
  }

  get errors(): string {
    return this.stderr;
  }
}
