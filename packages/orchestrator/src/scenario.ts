import { readFileSync } from 'node:fs';
import { canonicalJson, ERRNO_CODES, HCALL_CODES, RTAS_CODES, type Json, type Output, type State } from '@iommu-orch/core';
import { z } from 'zod';
import { formatIssues, InputError, parseCommand } from './command-schema.js';
import type { EventViolation } from './apply-command.js';
import type { Orchestrator } from './orchestrator.js';

/**
 * A scenario: a topology and a list of commands, each optionally stating what it expects.
 * The format is documented in docs/scenario-format.md.
 */
const errorCode = z.enum([...ERRNO_CODES, ...HCALL_CODES, ...RTAS_CODES]);
const outputs = z.record(z.string(), z.json());
const expectation = z.union([
  z.literal('ok'),
  z.strictObject({ ok: outputs }),
  z.strictObject({ error: errorCode, output: outputs.optional() }),
]);
export type Expectation = z.infer<typeof expectation>;

const step = z.looseObject({ type: z.string(), expect: expectation.optional(), note: z.string().optional() });

export const scenarioSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  clock: z.strictObject({ start: z.iso.datetime().optional(), stepMs: z.number().int().positive().optional() }).optional(),
  topology: z
    .strictObject({
      phbs: z.array(z.looseObject({})).default([]),
      devices: z.array(z.looseObject({})).default([]),
    })
    .optional(),
  commands: z.array(step),
});
export type Scenario = z.infer<typeof scenarioSchema>;

export function parseScenario(raw: unknown, where = 'scenario'): Scenario {
  const r = scenarioSchema.safeParse(raw);
  if (!r.success) throw new InputError(`${where}: ${formatIssues(r.error)}`);
  return r.data;
}

export function loadScenario(file: string): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read scenario ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseScenario(raw, file);
}

export interface StepResult {
  readonly index: number;
  readonly type: string;
  readonly note?: string;
  readonly ok: boolean;
  readonly output?: Output;
  /** A refusal; `output` holds what the kernel still reports with it (EMSGSIZE's count). */
  readonly error?: { readonly code: string; readonly message: string; readonly output?: Output };
  /** Positions of the events this step appended. */
  readonly positions: readonly number[];
  /** null when the step stated no expectation. */
  readonly expectationMet: boolean | null;
  readonly expected?: Expectation;
  /** Invariants the step's events broke (present only when some did). */
  readonly violations?: readonly EventViolation[];
}

export interface ScenarioReport {
  readonly name: string;
  readonly results: readonly StepResult[];
  /** Every expectation met and no invariant broken. */
  readonly passed: boolean;
  readonly state: State;
}

/** The topology section as the addPhb / addDevice commands it stands for, each expected to succeed. */
export function scenarioSteps(s: Scenario): { raw: Record<string, unknown>; expect?: Expectation; note?: string }[] {
  const topo = s.topology;
  const steps: { raw: Record<string, unknown>; expect?: Expectation; note?: string }[] = [];
  for (const phb of topo?.phbs ?? []) steps.push({ raw: { type: 'addPhb', ...phb }, expect: 'ok' });
  for (const dev of topo?.devices ?? []) steps.push({ raw: { type: 'addDevice', ...dev }, expect: 'ok' });
  for (const { expect, note, ...raw } of s.commands) {
    steps.push({ raw, ...(expect === undefined ? {} : { expect }), ...(note === undefined ? {} : { note }) });
  }
  return steps;
}

/** Every step with its command validated; a malformed one is an InputError naming the step. */
export function parseSteps(scenario: Scenario) {
  return scenarioSteps(scenario).map((s, i) => {
    try {
      return { ...s, command: parseCommand(s.raw) };
    } catch (e) {
      throw new InputError(`step ${i + 1} (${String(s.raw.type)}): ${(e as Error).message}`);
    }
  });
}

/**
 * Runs every step in order. Input errors (a malformed command) abort the run with InputError before
 * anything is executed: the whole scenario is validated first.
 */
export async function runScenario(orchestrator: Orchestrator, scenario: Scenario): Promise<ScenarioReport> {
  const steps = parseSteps(scenario);
  const results: StepResult[] = [];
  for (const [i, s] of steps.entries()) {
    const r = await orchestrator.execute(s.command);
    const base = { index: i + 1, type: s.command.type, ...(s.note === undefined ? {} : { note: s.note }) };
    const result: StepResult = r.ok
      ? {
          ...base, ok: true, output: r.output, positions: r.events.map((e) => e.position), expectationMet: null,
          ...(r.violations.length > 0 ? { violations: r.violations } : {}),
        }
      : {
          ...base, ok: false, positions: [], expectationMet: null,
          error: { code: r.error.code, message: r.error.message, ...(r.error.output === undefined ? {} : { output: r.error.output }) },
        };
    results.push(s.expect === undefined ? result : { ...result, expected: s.expect, expectationMet: meets(result, s.expect) });
  }
  const passed = results.every((r) => r.expectationMet !== false && r.violations === undefined);
  return { name: scenario.name, results, passed, state: orchestrator.state };
}

/** Each listed output must equal the reported one (deep equality for lists and objects). */
function meets(r: StepResult, e: Expectation): boolean {
  if (e === 'ok') return r.ok;
  if ('error' in e) return !r.ok && r.error?.code === e.error && outputsMatch(r.error.output, e.output ?? {});
  return r.ok && outputsMatch(r.output, e.ok);
}

function outputsMatch(actual: Output | undefined, expected: Readonly<Record<string, Json>>): boolean {
  return Object.entries(expected).every(([k, v]) => actual?.[k] !== undefined && canonicalJson(actual[k]!) === canonicalJson(v));
}
