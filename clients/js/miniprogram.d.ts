// Types of herald-client/miniprogram: the same client, through `wx` (or uni-app's `uni`).
import type { ClientOptions, HeraldClient, MiniProgramApi } from './herald.js';

export type * from './herald.js';

export interface MiniProgramClientOptions extends Omit<ClientOptions, 'wx' | 'fetch' | 'WebSocket' | 'share'> {
  wx: MiniProgramApi;
}

export function createClient(options: MiniProgramClientOptions): HeraldClient;
