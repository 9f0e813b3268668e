/** @iommu-orch/orchestrator: command execution, sagas, replay, audit, scenarios, the stress runner and the iommu-orch CLI. */
export { applyCommand, type Applied, type ApplyOptions, type EventViolation } from './apply-command.js';
export { entityKey, EVENT_CATEGORY, type Category, type Entity } from './audit/concerns.js';
export { auditDiff, stateDiff, type AuditDiff, type StateDiff } from './audit/diff.js';
export { auditExplain, type Explanation, type Verdict } from './audit/explain.js';
export { indexedHistory, type IndexedHistoryOptions } from './audit/history-index.js';
export { auditHistory, type History, type HistoryEntry, type OwnershipPeriod } from './audit/history.js';
export { renderReportHtml } from './audit/report-html.js';
export { auditReport, type ReportModel } from './audit/report.js';
export { scanLog, type Bound, type ScanPoint, type ScanResult } from './audit/scan.js';
export { logicalClock, systemClock, type Clock } from './clock.js';
export { COMMAND_SCHEMAS, InputError, parseCommand } from './command-schema.js';
export { demoScenarioPath } from './cli/demo-path.js';
export { EXIT, type Io } from './cli/io.js';
export { fault, FAULT_NAMES, type Fault, type FaultName } from './faults.js';
export { main } from './cli/main.js';
export { Orchestrator, type ExecuteResult, type OrchestratorOptions } from './orchestrator.js';
export { renderState } from './render.js';
export { HOST_STREAM, replay, toDomainEvent, type ReplayOptions, type ReplayResult } from './replay.js';
export {
  checkSnapshot, newestValidSnapshot, SNAPSHOT_FORMAT_ID, snapshotOf, type SnapshotCheck, type SnapshotRejection, type SnapshotStart,
} from './snapshots.js';
export { shipLog, type ShipOptions, type ShipReport } from './ship/ship.js';
export { subscribeFrom, type SubscribeOptions } from './subscription.js';
export { auditLog, type AuditReport, type SnapshotAudit } from './verify.js';
export {
  loadScenario, parseScenario, runScenario, scenarioSchema, type Expectation, type Scenario, type ScenarioReport, type StepResult,
} from './scenario.js';
export { assignGroup, type AssignPlan, type MapPlan } from './sagas/assign-group.js';
export { claimantOf } from './sagas/claims.js';
export { disableSriov, removeSlotOrderly } from './sagas/orderly-removal.js';
export { answerRemovalRequests, answerRequestsUntil, pendingRequests, releaseGroup } from './sagas/release-group.js';
export {
  isWait, runSaga, WAIT, type RunSagaOptions, type Saga, type SagaResult, type SagaStep, type StepOutcome, type View,
} from './sagas/saga.js';
export { Prng } from './stress/prng.js';
export { runStress, type StressOptions, type StressReport, type StressViolation } from './stress/runner.js';
export { STRESS_MIX, type StressOp } from './stress/actors.js';
export { commandJson, failsAt, reproScenario, shrink, type ShrinkOptions } from './stress/shrink.js';
export { bootCommands, defaultTopologyPath, loadTopology, stressTopologySchema, type StressTopology } from './stress/topology.js';
export { recoverPe, type DriverHandlers, type EehHandlers, type EehRecoveryOptions } from './sagas/eeh-recovery.js';
