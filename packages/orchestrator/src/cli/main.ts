import { StoreError } from '@iommu-orch/store';
import { Command, CommanderError } from 'commander';
import { InputError } from '../command-schema.js';
import { registerAudit } from './audit.js';
import { registerAuditVerify } from './audit-verify.js';
import { registerDemo } from './demo.js';
import { EXIT, type CliContext, type Io } from './io.js';
import { registerRun } from './run.js';
import { registerShip } from './ship.js';
import { registerStress } from './stress.js';

/** The iommu-orch command line. Exit codes are decided here (see io.ts) and nowhere else. */
const processIo: Io = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
  ...(process.stderr.isTTY ? { status: (line: string) => process.stderr.write(`\r\x1b[2K${line}`) } : {}),
};

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  if (io === processIo) quietOnClosedPipe();
  let code: number = EXIT.ok;
  const ctx: CliContext = { io, setExitCode: (c) => (code = c) };
  const program = new Command('iommu-orch')
    .description('Event-sourced orchestrator for the PPC64 sPAPR TCE IOMMU under iommufd')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showSuggestionAfterError();
  registerRun(program, ctx);
  registerDemo(program, ctx);
  registerAuditVerify(registerAudit(program, ctx), ctx);
  registerStress(program, ctx);
  registerShip(program, ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    return exitCodeFor(e, io);
  }
}

/** A reader that stops early (`iommu-orch audit history ... | head`) closes the pipe: stop, quietly. */
function quietOnClosedPipe(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(EXIT.ok);
  });
}

/** Maps a thrown error to an exit code and a one-line message; never prints a stack trace. */
function exitCodeFor(e: unknown, io: Io): number {
  if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.badInput;
  if (e instanceof InputError) {
    io.err(`iommu-orch: ${e.message}`);
    return EXIT.badInput;
  }
  if (StoreError.is(e)) {
    io.err(`iommu-orch: ${e.message}`);
    return e.code === 'WRONG_EXPECTED_VERSION' || e.code === 'BUSY' || e.code === 'CHAIN_BROKEN' ? EXIT.failed : EXIT.badInput;
  }
  io.err(`iommu-orch: internal error: ${e instanceof Error ? e.message : String(e)}`);
  return EXIT.internal;
}
