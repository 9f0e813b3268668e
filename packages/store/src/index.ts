/** @iommu-orch/store: the append-only, hash-chained event log behind an engine-neutral interface. */
export { checkExpectedVersion, StoreError, WrongExpectedVersionError, type ExpectedVersion, type StoreErrorCode } from './errors.js';
export {
  parseMetadata, readAll, type AppendOptions, type AppendResult, type CommandRecord, type EventMetadata, type EventRecord, type EventStore, type FoldRow, type NewEvent,
  type Snapshot, type StoredEvent,
} from './event-store.js';
export { chainHash, genesisHash, recordBytes, sha256Hex, verifyChain, type ChainReport, type TrustedHead } from './hash-chain.js';
export { MemoryEventStore } from './memory-store.js';
export { SQLITE_SCHEMA_VERSION, SqliteEventStore, type SqliteStoreOptions } from './sqlite-store.js';
export { PostgresEventStore, type ImportBatch, type PostgresStoreOptions } from './postgres-store.js';
