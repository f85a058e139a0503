/*
 * herald-client/miniprogram: the same client for WeChat-style mini-programs
 * (wx) and uni-app (uni). Pass the API object as `wx`: the client then
 * connects with wx.connectSocket and falls back to long-polling through
 * wx.request when sockets fail. herald.js holds all of it, so that each of
 * the two files Herald serves is one self-contained module.
 */
export { createClient } from './herald.js';
