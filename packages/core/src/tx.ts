import type { IommuEvent } from './events.js';
import { evolve } from './evolve.js';
import type { State } from './state.js';

/**
 * A decision under construction. Emitting an event folds it into `state` at once, so each later check
 * of a multi-step decision (a surprise removal: detach, release, remove) sees the effect of the steps
 * before it, exactly as replay will. Nothing leaves a Tx unless the whole decision succeeds.
 */
export class Tx {
  readonly events: IommuEvent[] = [];
  /** The state after each event, in step with `events`: what checks after every event look at. */
  readonly states: State[] = [];
  constructor(public state: State) {}

  emit(event: IommuEvent): void {
    this.events.push(event);
    this.state = evolve(this.state, event);
    this.states.push(this.state);
  }
}
