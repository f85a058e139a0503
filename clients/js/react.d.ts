// Types of herald-client/react.
import type { HeraldClient, Snapshot } from './herald.js';

/** The client's snapshot as React state: the component renders again whenever it changes. */
export function useInbox(client: HeraldClient): Snapshot;
