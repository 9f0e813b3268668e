/** @iommu-orch/orchestrator: command execution, replay, scenarios and the iommu-orch CLI. */
export { logicalClock, systemClock, type Clock } from './clock.js';
export { COMMAND_SCHEMAS, InputError, parseCommand } from './command-schema.js';
export { demoScenarioPath } from './cli/demo-path.js';
export { EXIT, type Io } from './cli/io.js';
export { main } from './cli/main.js';
export { Orchestrator, type ExecuteResult, type OrchestratorOptions } from './orchestrator.js';
export { renderState } from './render.js';
export { HOST_STREAM, replay, toDomainEvent, type ReplayOptions, type ReplayResult } from './replay.js';
export {
  checkSnapshot, newestValidSnapshot, SNAPSHOT_FORMAT_ID, snapshotOf, type SnapshotCheck, type SnapshotRejection, type SnapshotStart,
} from './snapshots.js';
export { subscribeFrom, type SubscribeOptions } from './subscription.js';
export { auditLog, type AuditReport, type SnapshotAudit } from './verify.js';
export {
  loadScenario, parseScenario, runScenario, scenarioSchema, type Expectation, type Scenario, type ScenarioReport, type StepResult,
} from './scenario.js';
