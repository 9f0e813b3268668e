import { realpathSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { canonicalJson, IommuError, normalizeBdf, parseU64, stateView, type Json } from '@iommu-orch/core';
import { Option, type Command } from 'commander';
import { auditDiff, renderDiff } from '../audit/diff.js';
import { auditExplain, renderExplanation } from '../audit/explain.js';
import { indexedHistory } from '../audit/history-index.js';
import { fleetHistory, renderFleetHistory } from '../audit/fleet.js';
import { auditHistory, renderHistory } from '../audit/history.js';
import { CATEGORIES, type Category, type Entity } from '../audit/concerns.js';
import { renderReportHtml } from '../audit/report-html.js';
import { auditReport, topologyCounts } from '../audit/report.js';
import type { Bound } from '../audit/scan.js';
import { InputError } from '../command-schema.js';
import { renderState, stateHeading } from '../render.js';
import { replay } from '../replay.js';
import { addLogSource, fleetStore, withLogSource, type CliContext, type LogSource } from './io.js';

/**
 * The `audit` group: questions answered from the event log, read-only. Every subcommand opens the log
 * read-only, answers as of the head it saw when it started (another process may keep appending), and
 * prints text, or canonical JSON with --json.
 */
export function registerAudit(program: Command, ctx: CliContext): Command {
  const audit = program.command('audit').description('questions answered from the event log (read-only)');
  const print = (json: boolean | undefined, value: object, text: () => string): void => {
    ctx.io.out(json ? canonicalJson(value as Json) : text());
  };
  const at = (): Option => new Option('--at <position|time>', 'answer as of this position, or this ISO 8601 time (default: the head)');

  audit
    .command('replay')
    .description('the state as of a position (or ISO time), rebuilt from the log')
    .addOption(at())
    .option('--json', 'canonical JSON state')
    .action(async (opts: LogSource & { at?: string; json?: boolean }) => {
      const to = parseBound('--at', opts.at);
      // The newest valid snapshot plus the tail, bounded by the head seen now (a writer may go on).
      const r = await withLogSource(opts, async (store) => {
        const head = await store.head();
        if (to && 'position' in to && to.position > head) throw new InputError(`position ${to.position} is past the end of the log (head ${head})`);
        return { head, ...(await replay(store, to === undefined ? { at: head } : 'position' in to ? { at: to.position } : { at: head, until: to.time })) };
      });
      for (const s of r.rejectedSnapshots) ctx.io.err(`iommu-orch: skipped the snapshot at position ${s.position}: ${s.reason}`);
      print(opts.json, { position: r.position, time: r.time, head: r.head, state: stateView(r.state) }, () => renderState(r.state, stateHeading(r.position, r.time)));
    });

  audit
    .command('history')
    .description('timeline of one device, group or context: ownership, attachment, windows, mappings, hotplug')
    .option('--device <dddd:bb:dd.f>', 'a PCI device')
    .option('--group <id>', 'an IOMMU group id')
    .option('--context <id>', 'a user context (iommufd context / VFIO container)')
    .addOption(at())
    .option('--kind <list>', `only these kinds of change, comma-separated: ${CATEGORIES.join(', ')}`)
    .option('--index <file>', 'answer from this sidecar index (created, then kept up to date), instead of a pass over the log')
    .option('--json', 'canonical JSON')
    .action(async (opts: LogSource & { device?: string; group?: string; context?: string; at?: string; kind?: string; index?: string; json?: boolean }) => {
      const entity = parseEntity(opts);
      const to = parseBound('--at', opts.at);
      const kinds = parseKinds(opts.kind);
      const options = { ...(to ? { to } : {}), ...(kinds ? { kinds } : {}) };
      const fleet = fleetStore(opts);
      if (fleet !== undefined) {
        // Positions are per host, so only a time bounds a fleet-wide answer.
        if (to && 'position' in to) throw new InputError('--store without --host asks every host: --at wants an ISO 8601 time, positions are per host');
        if (opts.index !== undefined) throw new InputError('--index answers one log: give --host with --store, or --db');
        const f = await fleetHistory(fleet, entity, options);
        print(opts.json, f, () => renderFleetHistory(f));
        return;
      }
      if (opts.index !== undefined && opts.db !== undefined) refuseAuditedFile(opts.db, opts.index, '--index');
      const h = await withLogSource(opts, (store) =>
        opts.index === undefined ? auditHistory(store, entity, options) : indexedHistory(store, opts.index, entity, options),
      );
      print(opts.json, h, () => renderHistory(h));
    });

  audit
    .command('diff')
    .description('what changed between two points: devices, PEs, groups, ownership, domains, windows, mappings (as ranges)')
    .addOption(new Option('--from <position|time>', 'the earlier point').makeOptionMandatory())
    .option('--to <position|time>', 'the later point (default: the head)')
    .option('--json', 'canonical JSON')
    .action(async (opts: LogSource & { from: string; to?: string; json?: boolean }) => {
      const from = parseBound('--from', opts.from)!;
      const to = parseBound('--to', opts.to);
      const d = await withLogSource(opts, (store) => auditDiff(store, from, to));
      print(opts.json, d, () => renderDiff(d));
    });

  audit
    .command('explain')
    .description('can a device reach an IOVA, through which group, domain, window and TCE, and which event mapped it')
    .addOption(new Option('--device <dddd:bb:dd.f>', 'the PCI device').makeOptionMandatory())
    .addOption(new Option('--iova <address>', 'bus address, hex (0x...) or decimal').makeOptionMandatory())
    .addOption(at())
    .option('--json', 'canonical JSON')
    .action(async (opts: LogSource & { device: string; iova: string; at?: string; json?: boolean }) => {
      const bdf = parseDevice(opts.device);
      const iova = parseU64(opts.iova);
      if (iova === null) throw new InputError(`--iova wants a 64-bit address (hex 0x... or decimal), got "${opts.iova}"`);
      const to = parseBound('--at', opts.at);
      const x = await withLogSource(opts, (store) => auditExplain(store, bdf, iova, to ? { to } : {}));
      print(opts.json, x, () => renderExplanation(x));
    });

  audit
    .command('report')
    .description('one self-contained HTML page: topology and owners, timeline, window occupancy')
    .addOption(new Option('--out <file>', 'HTML file to write').makeOptionMandatory())
    .addOption(at())
    .option('--json', 'print the report model as canonical JSON too')
    .action(async (opts: LogSource & { out: string; at?: string; json?: boolean }) => {
      if (opts.db !== undefined) refuseAuditedFile(opts.db, opts.out, '--out');
      const to = parseBound('--at', opts.at);
      const model = await withLogSource(opts, (store) => auditReport(store, to ? { to } : {}));
      // Never the --store URL: it may hold a password.
      const html = renderReportHtml(model, opts.db ?? `host ${opts.host ?? ''}`);
      try {
        writeFileSync(opts.out, html);
      } catch (e) {
        throw new InputError(`cannot write ${opts.out}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const { devices, groups } = topologyCounts(model);
      print(opts.json, { out: opts.out, bytes: Buffer.byteLength(html), model }, () =>
        `wrote ${opts.out} (${Buffer.byteLength(html)} bytes): position ${model.position} of ${model.head}, ${model.events} events, ${devices} devices, ${groups} groups, ${model.windows.length} windows`);
    });
  for (const c of audit.commands) addLogSource(c);
  return audit;
}

/** The audit never writes the log it reads: an output path naming the log or its WAL files is refused. */
function refuseAuditedFile(db: string, file: string, flag: string): void {
  const log = realPath(db);
  if ([log, `${log}-wal`, `${log}-shm`, `${log}-journal`].includes(realPath(file))) throw new InputError(`${flag} ${file} would overwrite the audited log`);
}

/** The path with symbolic links resolved (for a file not there yet, in its folder). */
function realPath(file: string): string {
  const abs = resolve(file);
  for (const candidate of [() => realpathSync(abs), () => join(realpathSync(dirname(abs)), basename(abs))]) {
    try {
      return candidate();
    } catch {
      // not there (yet): try the folder, then the plain path
    }
  }
  return abs;
}

/** A position (a non-negative integer) or an ISO 8601 time; undefined when the option is absent. */
export function parseBound(flag: string, value: string | undefined): Bound | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) return { position: Number(value) };
  if (/^\d{4}-\d{2}-\d{2}/.test(value) && !Number.isNaN(Date.parse(value))) return { time: value };
  throw new InputError(`${flag} wants a position (a non-negative integer) or an ISO 8601 time, got "${value}"`);
}

function parseKinds(list: string | undefined): ReadonlySet<Category> | undefined {
  if (list === undefined) return undefined;
  const kinds = list.split(',').map((k) => k.trim());
  const unknown = kinds.filter((k) => !(CATEGORIES as readonly string[]).includes(k));
  if (unknown.length > 0 || kinds.length === 0) throw new InputError(`--kind wants kinds among ${CATEGORIES.join(', ')}; got "${list}"`);
  return new Set(kinds as Category[]);
}

function parseDevice(text: string): string {
  try {
    return normalizeBdf(text);
  } catch (e) {
    if (IommuError.is(e)) throw new InputError(`--device wants a PCI address dddd:bb:dd.f, got "${text}"`);
    throw e;
  }
}

function parseEntity(opts: { device?: string; group?: string; context?: string }): Entity {
  const given = (['device', 'group', 'context'] as const).filter((k) => opts[k] !== undefined);
  if (given.length !== 1) throw new InputError(`audit history wants exactly one of --device, --group, --context${given.length ? ` (got ${given.map((k) => `--${k}`).join(', ')})` : ''}`);
  if (opts.device !== undefined) return { kind: 'device', bdf: parseDevice(opts.device) };
  if (opts.group !== undefined) {
    if (!/^\d+$/.test(opts.group) || !Number.isSafeInteger(Number(opts.group))) throw new InputError(`--group wants a group id (a non-negative integer), got "${opts.group}"`);
    return { kind: 'group', id: Number(opts.group) };
  }
  const name = opts.context!;
  if (name.length === 0 || name.length > 64) throw new InputError('--context wants a context id of 1 to 64 characters');
  return { kind: 'context', name };
}
