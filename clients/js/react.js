/*
 * herald-client/react: a user's message center as React state.
 */
import { useSyncExternalStore } from 'react';

/**
 * Everything `client` shows (state, transport, notifications, counts, …) as
 * one snapshot that changes identity on every change, so a component renders
 * again exactly when something it shows changed. The client is started and
 * stopped by its owner, not by the hook: several components may share one.
 */
export function useInbox(client) {
  return useSyncExternalStore(client.subscribe, () => client.snapshot, () => client.snapshot);
}
