#!/usr/bin/env node
// Committed shim so the bin link exists at install time; the code is built into dist/ by `pnpm build`.
import { main } from '../dist/index.js';

process.exitCode = await main(process.argv.slice(2));
