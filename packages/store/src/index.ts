/** @iommu-orch/store: the append-only event log behind an engine-neutral interface. */
export { StoreError, WrongExpectedVersionError, type ExpectedVersion, type StoreErrorCode } from './errors.js';
export { readAll, type AppendOptions, type AppendResult, type EventMetadata, type EventStore, type NewEvent, type StoredEvent } from './event-store.js';
export { MemoryEventStore } from './memory-store.js';
export { SQLITE_SCHEMA_VERSION, SqliteEventStore, type SqliteStoreOptions } from './sqlite-store.js';
