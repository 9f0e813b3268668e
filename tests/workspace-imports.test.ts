import * as core from '@iommu-orch/core';
import type { Command, Decision, IommuEvent, State } from '@iommu-orch/core';
import * as orchestrator from '@iommu-orch/orchestrator';
import type { ExecuteResult, Scenario } from '@iommu-orch/orchestrator';
import * as store from '@iommu-orch/store';
import type { EventStore, StoredEvent } from '@iommu-orch/store';
import { describe, expect, expectTypeOf, it } from 'vitest';

/**
 * Another workspace package importing ours by name: the values resolve and the types are the real
 * ones (this file is type-checked by `pnpm typecheck`, so a type regression fails the build).
 */
describe('workspace imports', () => {
  it('exposes the core decider, store engines and orchestrator by package name', () => {
    expect(typeof core.decide).toBe('function');
    expect(typeof core.evolve).toBe('function');
    expect(typeof core.invariants).toBe('function');
    expect(typeof store.SqliteEventStore.open).toBe('function');
    expect(typeof orchestrator.Orchestrator.open).toBe('function');
    expect(core.EVENT_TYPES).toContain('TcesMapped');
  });

  it('carries full types', () => {
    expectTypeOf(core.decide).parameters.toEqualTypeOf<[State, Command]>();
    expectTypeOf(core.decide).returns.toEqualTypeOf<Decision>();
    expectTypeOf<IommuEvent['type']>().toEqualTypeOf<core.IommuEventType>();
    expectTypeOf<StoredEvent>().toHaveProperty('position').toEqualTypeOf<number>();
    expectTypeOf<store.SqliteEventStore>().toMatchTypeOf<EventStore>();
    expectTypeOf<ExecuteResult>().toHaveProperty('ok');
    expectTypeOf<Scenario>().toHaveProperty('commands');
  });
});
