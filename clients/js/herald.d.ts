// Types of herald-client (hand-written: the package ships plain JavaScript).

/** How the client receives the log: Server-Sent Events, WebSocket, or long-polling. */
export type Transport = 'sse' | 'ws' | 'poll';

/** 'connecting' until first live; 'reconnecting' after a live connection was lost; 'closed' before start and after stop. */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'closed';

export interface NotificationAction {
  id: string;
  label: string;
  url: string | null;
}

/** A notification as Herald sends it (timestamps are RFC 3339 strings). */
export interface Notification {
  id: string;
  seq: number;
  title: string;
  body: string | null;
  category: string | null;
  data: Record<string, unknown> | null;
  created_at: string;
  read_at: string | null;
  expires_at: string | null;
  seen_at: string | null;
  archived_at: string | null;
  snoozed_until: string | null;
  actions: NotificationAction[];
  action_taken: { id: string; at: string } | null;
  key: string | null;
  updated_at: string | null;
  topic: string | null;
}

/** The user's counts, exactly as the server has them (archived and snoozed ones left out). */
export interface Counts {
  unread: number;
  unseen: number;
}

export interface Preferences {
  categories: Record<string, { enabled: boolean }>;
}

export type EventType =
  | 'notification' | 'updated' | 'read' | 'unread' | 'seen' | 'archived' | 'unarchived'
  | 'snoozed' | 'unsnoozed' | 'action' | 'deleted' | 'expired'
  | 'read_all' | 'seen_all' | 'archived_all' | 'deleted_all' | 'preferences' | 'reset';

/** One event of the user's log. `data` carries `counts` (the user's counts just after it). */
export interface HeraldEvent {
  seq: number;
  type: EventType | (string & {});
  data: { counts?: Counts; [field: string]: unknown };
}

/** Which notifications `notifications` holds: a view (inbox: neither archived nor snoozed) and a category (null: all). */
export interface Filter {
  view: 'inbox' | 'archived' | 'snoozed';
  category: string | null;
}

/** An error of a request: the HTTP status and the server's problem document, when there was an answer. */
export interface HeraldError extends Error {
  status?: number;
  problem?: { type?: string; title?: string; status?: number; detail?: string };
}

/** WeChat-style APIs (`wx`, or uni-app's `uni`): only what the client calls. */
export interface MiniProgramApi {
  request(options: {
    url: string;
    method?: any;
    header?: Record<string, string>;
    data?: any;
    timeout?: number;
    dataType?: any;
    success?(result: { statusCode: number; data: any }): void;
    fail?(error: { errMsg?: string }): void;
  }): any;
  connectSocket(options: { url: string; fail?(error: any): void }): MiniProgramSocketTask;
}

export interface MiniProgramSocketTask {
  onOpen(callback: (result: any) => void): void;
  onMessage(callback: (message: { data: any }) => void): void;
  onClose(callback: (result: { code?: number }) => void): void;
  onError(callback: (error: any) => void): void;
  send(options: { data: string }): void;
  close(options: { code?: number }): void;
}

export interface ClientOptions {
  /** Herald's base URL: scheme, host and port. */
  url: string;
  /** A JWT for the user. Asked again before it expires and whenever the server refuses it. */
  getToken: () => string | Promise<string>;
  /** Tried in this order; one that never opens hands over to the next. Default ['sse', 'ws', 'poll']. */
  transports?: Transport[];
  /** Notifications per page (1–100). Default 50. */
  pageSize?: number;
  /** Share one live connection between the tabs of a user (browsers). Default true. */
  share?: boolean;
  /** Another fetch (default: the global one). */
  fetch?: (input: string, init?: any) => Promise<any>;
  /** Another WebSocket class (default: the global one), e.g. the `ws` package's in Node. */
  WebSocket?: new (url: string) => any;
  /** The mini-program API (`wx`, or uni-app's `uni`): connect through it instead of fetch and WebSocket. */
  wx?: MiniProgramApi;
}

/** Everything the client shows, in one object that is replaced on every change. */
export interface Snapshot {
  readonly state: ConnectionState;
  readonly transport: Transport | null;
  /** The last seq applied. */
  readonly lastSeq: number;
  /** What the filter selects (by default the inbox), newest first, loaded pages only. */
  readonly notifications: readonly Notification[];
  readonly counts: Counts;
  /** Older notifications wait for loadMore(). */
  readonly hasMore: boolean;
  /** The first page of the current filter is loaded (false while it (re)loads). */
  readonly ready: boolean;
  /** The user's preferences: asked for after each first page, then kept current by `preferences` events. */
  readonly preferences: Preferences | null;
  readonly filter: Filter;
  /** Whether this tab holds the live connection (the others follow it). */
  readonly leader: boolean;
}

export interface HeraldClient extends Snapshot {
  readonly snapshot: Snapshot;
  /** Loads the first page, then goes live. Network failures are retried; rejects if getToken fails or its token is refused. */
  start(): Promise<void>;
  /** Closes everything: connection, requests, timers, listeners. start() may be called again. */
  stop(): void;
  /** Called after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  on(type: 'event', listener: (event: HeraldEvent) => void): () => void;
  on(type: 'state', listener: (state: ConnectionState) => void): () => void;
  on(type: 'error', listener: (error: HeraldError) => void): () => void;
  /** Loads the next older page; false when there was none. */
  loadMore(): Promise<boolean>;
  /** Shows another view or category (the first page of it is loaded). */
  setFilter(filter: Partial<Filter>): Promise<void>;
  /** Turns a category on or off; `preferences` changes when its event arrives. */
  setPreference(category: string, enabled: boolean): Promise<void>;
  markRead(id: string): Promise<void>;
  markUnread(id: string): Promise<void>;
  markSeen(id: string): Promise<void>;
  archive(id: string): Promise<void>;
  unarchive(id: string): Promise<void>;
  snooze(id: string, until: Date | string | number): Promise<void>;
  unsnooze(id: string): Promise<void>;
  /** Takes one of the notification's actions (the first action taken wins; a second one rejects with status 409). */
  act(id: string, actionId: string): Promise<void>;
  remove(id: string): Promise<void>;
  /** Up to the last seq applied: what arrived after it stays unread. */
  markAllRead(options?: { category?: string | null }): Promise<void>;
  markAllSeen(options?: { category?: string | null }): Promise<void>;
  archiveAll(options?: { category?: string | null }): Promise<void>;
}

export function createClient(options: ClientOptions): HeraldClient;
