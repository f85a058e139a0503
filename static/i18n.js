/*
 * The page's languages: one message table per language, the choice between
 * them, and the formatting of counts and times.
 *
 * Plurals, relative times, numbers and dates come from Intl (PluralRules,
 * RelativeTimeFormat, NumberFormat, DateTimeFormat), never from rules written
 * here: a table lists one text per plural category its language has, and Intl
 * says which category a number falls in.
 */

const STORAGE_KEY = 'herald.lang';

/** Language tags, each named in its own language (a reader must find theirs in the switch). */
export const LANGUAGES = { en: 'English', 'zh-CN': '简体中文' };

const MESSAGES = {
  en: {
    language: 'Language',
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    closed: 'Signed out',
    sse: 'SSE',
    ws: 'WebSocket',
    poll: 'long-poll',
    sharedConnection: 'Connection shared with another tab',
    signedInAs: 'Signed in as {user}',
    signOut: 'Sign out',
    signIn: 'Sign in',
    tokenLabel: 'Access token (JWT)',
    notifications: 'Notifications',
    category: 'Category',
    all: 'All',
    markAllRead: 'Mark all read',
    empty: 'No notifications.',
    loadOlder: 'Load older',
    unreadFlag: 'Unread: ',
    markRead: 'Mark read',
    markUnread: 'Mark unread',
    delete: 'Delete',
    deleteLabel: 'Delete: {title}',
    newNotification: 'New notification: {title}',
    unread: { one: '{n} unread', other: '{n} unread' },
    signedOut: 'Signed out.',
    expired: 'Signed out: the token was rejected or has expired. Paste a new one to continue.',
    invalidToken: 'That is not a valid token (expected a JWT with a "sub" claim).',
    invalidLink: 'The sign-in link holds no valid token; nothing was changed.',
    unreachable: 'the server cannot be reached',
    loadFailed: 'Could not load notifications: {error}',
    loadOlderFailed: 'Could not load older notifications: {error}',
    readFailed: 'Could not mark as read: {error}',
    unreadFailed: 'Could not mark as unread: {error}',
    deleteFailed: 'Could not delete: {error}',
    readAllFailed: 'Could not mark all as read: {error}',
    switchTitle: 'Switch to another user?',
    switchText: 'This link signs you in as {next}. You are signed in as {current}.',
    switchWarning: 'Switch only if you expected this link: the notifications behind it belong to {next}, not to you.',
    switchKeep: 'Stay {current}',
    switchAccept: 'Switch to {next}',
    bellLabel: { one: 'Notifications, {n} new', other: 'Notifications, {n} new' },
    views: 'Lists',
    inbox: 'Inbox',
    archivedTab: 'Archived',
    emptyArchived: 'No archived notifications.',
    archive: 'Archive',
    archiveLabel: 'Archive: {title}',
    unarchive: 'Move to inbox',
    unarchiveLabel: 'Move to inbox: {title}',
    snooze: 'Snooze',
    snoozeLabel: 'Snooze: {title}',
    snoozeHour: 'For 1 hour',
    snoozeTomorrow: 'Tomorrow, {time}',
    snoozeNextWeek: 'Next Monday, {time}',
    actionTaken: '✓ {label}',
    newTab: '(opens in a new tab)',
    updatedNotification: 'Updated notification: {title}',
    actionFailed: 'Could not take the action: {error}',
    archiveFailed: 'Could not archive: {error}',
    unarchiveFailed: 'Could not move to the inbox: {error}',
    snoozeFailed: 'Could not snooze: {error}',
    settingsTitle: 'Notification settings',
    settingsHint: 'Turn a category off to stop receiving its notifications. Critical notifications always arrive.',
    settingsEmpty: 'No categories yet.',
    preferenceOn: 'On',
    preferenceOff: 'Off',
    preferenceLabel: 'Receive notifications in {category}',
    preferenceFailed: 'Could not change the setting: {error}',
  },
  'zh-CN': {
    language: '语言',
    connecting: '正在连接…',
    live: '实时',
    reconnecting: '正在重新连接…',
    closed: '未登录',
    sse: 'SSE',
    ws: 'WebSocket',
    poll: '长轮询',
    sharedConnection: '与另一个标签页共用连接',
    signedInAs: '当前用户：{user}',
    signOut: '退出登录',
    signIn: '登录',
    tokenLabel: '访问令牌（JWT）',
    notifications: '通知',
    category: '分类',
    all: '全部',
    markAllRead: '全部标为已读',
    empty: '暂无通知。',
    loadOlder: '加载更早的通知',
    unreadFlag: '未读：',
    markRead: '标为已读',
    markUnread: '标为未读',
    delete: '删除',
    deleteLabel: '删除：{title}',
    newNotification: '新通知：{title}',
    unread: { other: '{n} 条未读' },
    signedOut: '已退出登录。',
    expired: '已退出登录：令牌被拒绝或已过期。请粘贴新的令牌以继续。',
    invalidToken: '这不是有效的令牌（需要带有 "sub" 声明的 JWT）。',
    invalidLink: '登录链接中没有有效的令牌，未做任何更改。',
    unreachable: '无法连接服务器',
    loadFailed: '无法加载通知：{error}',
    loadOlderFailed: '无法加载更早的通知：{error}',
    readFailed: '无法标为已读：{error}',
    unreadFailed: '无法标为未读：{error}',
    deleteFailed: '无法删除：{error}',
    readAllFailed: '无法全部标为已读：{error}',
    switchTitle: '切换到另一个用户？',
    switchText: '此链接将以 {next} 的身份登录。你当前以 {current} 的身份登录。',
    switchWarning: '只有在你预期收到此链接时才切换：其中的通知属于 {next}，而不是你。',
    switchKeep: '继续使用 {current}',
    switchAccept: '切换到 {next}',
    bellLabel: { other: '通知，{n} 条新通知' },
    views: '列表',
    inbox: '收件箱',
    archivedTab: '已归档',
    emptyArchived: '暂无已归档的通知。',
    archive: '归档',
    archiveLabel: '归档：{title}',
    unarchive: '移回收件箱',
    unarchiveLabel: '移回收件箱：{title}',
    snooze: '稍后提醒',
    snoozeLabel: '稍后提醒：{title}',
    snoozeHour: '1 小时后',
    snoozeTomorrow: '明天 {time}',
    snoozeNextWeek: '下周一 {time}',
    actionTaken: '✓ {label}',
    newTab: '（在新标签页中打开）',
    updatedNotification: '通知已更新：{title}',
    actionFailed: '无法执行操作：{error}',
    archiveFailed: '无法归档：{error}',
    unarchiveFailed: '无法移回收件箱：{error}',
    snoozeFailed: '无法设置稍后提醒：{error}',
    settingsTitle: '通知设置',
    settingsHint: '关闭某个分类后，将不再收到该分类的通知。重要通知始终会送达。',
    settingsEmpty: '暂无分类。',
    preferenceOn: '开',
    preferenceOff: '关',
    preferenceLabel: '接收“{category}”分类的通知',
    preferenceFailed: '无法更改设置：{error}',
  },
};

let lang = chooseLanguage();
let plurals;
let relative;
let numbers;
useFormatters();

/** The saved choice, else the reader's first browser language we speak, else English. */
function chooseLanguage() {
  const saved = load();
  if (Object.hasOwn(MESSAGES, saved)) return saved;
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language]) {
    let language;
    try { language = new Intl.Locale(tag).language; } catch { continue; }
    // Every Chinese reader gets Simplified Chinese: closer to Traditional than English is.
    if (language === 'zh') return 'zh-CN';
    if (language === 'en') return 'en';
  }
  return 'en';
}

function useFormatters() {
  plurals = new Intl.PluralRules(lang);
  relative = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' });
  numbers = new Intl.NumberFormat(lang);
  document.documentElement.lang = lang;
}

// Storage can be unavailable (disabled, sandboxed): the choice then lasts for this page only.
function load() {
  try { return localStorage.getItem(STORAGE_KEY); } catch { return null; }
}

export const language = () => lang;

/** Switches the language and remembers the choice in this browser. */
export function setLanguage(tag) {
  if (!Object.hasOwn(MESSAGES, tag)) return;
  lang = tag;
  try { localStorage.setItem(STORAGE_KEY, tag); } catch { /* see load() */ }
  useFormatters();
}

/** The parts of a message, its `{name}` placeholders replaced by `params` (strings or DOM nodes). */
function parts(template, params) {
  return template.split(/\{(\w+)\}/).map((part, i) => (i % 2 ? params[part] ?? '' : part));
}

/** A message as text. */
export function t(key, params = {}) {
  return parts(MESSAGES[lang][key] ?? MESSAGES.en[key] ?? key, params).join('');
}

/** A message as nodes for `replaceChildren`, so names inside it can be elements of their own. */
export function tNodes(key, params) {
  return parts(MESSAGES[lang][key] ?? MESSAGES.en[key], params).filter(part => part !== '');
}

/** A count: Intl.PluralRules picks the table's text for `n`. */
export function count(key, n) {
  const forms = MESSAGES[lang][key];
  return (forms[plurals.select(n)] ?? forms.other).replace('{n}', numbers.format(n));
}

export const formatNumber = n => numbers.format(n);

const UNITS = [['day', 86400], ['hour', 3600], ['minute', 60]];

/** "3 minutes ago" / "3分钟前"; a week or more ago, the date. */
export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  // A server clock slightly ahead of ours must not make times lie in the future.
  const seconds = Math.min(0, Math.round((t - now) / 1000));
  if (seconds <= -7 * 86400) return new Date(t).toLocaleDateString(lang);
  for (const [unit, size] of UNITS) {
    if (-seconds >= size) return relative.format(Math.trunc(seconds / size), unit);
  }
  return relative.format(0, 'second');
}

/** A time of day, "9:00 AM" / "09:00". */
export function clockTime(date) {
  return date.toLocaleTimeString(lang, { hour: 'numeric', minute: '2-digit' });
}

export function fullTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(lang);
}
