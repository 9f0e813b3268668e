import { fileURLToPath } from 'node:url';

/** The demo scenario ships with the package; the same path resolves from src/ and from dist/. */
export function demoScenarioPath(): string {
  return fileURLToPath(new URL('../../scenarios/demo.json', import.meta.url));
}
