/**
 * The `iommu-orch ship` command in a child process of its own (run with tsx, reading the workspace
 * sources), so a test can SIGKILL a shipper mid-way:
 *   tsx --conditions=@iommu-orch/source support/ship-child.ts <ship arguments...>
 * Prints what the CLI prints (a "batch: ..." line after every committed batch), then "exit <code>".
 */
import { main } from '@iommu-orch/orchestrator';
import { sayTo } from './say.js';

const say = (line: string): void => sayTo(1, line);
const code = await main(['ship', ...process.argv.slice(2)], { out: say, err: (t) => sayTo(2, t) });
say(`exit ${code}`);
process.exit(code);
