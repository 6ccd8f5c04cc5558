// What the client needs from its host: a clock, timers, random ids and URL resolution.

/** Milliseconds from a monotonic clock where there is one. */
export const now = () => (globalThis.performance ? performance.now() : Date.now());

/** setTimeout fires at once for delays past 2**31 - 1 ms: such delays mean "never". */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `setTimeout(callback, ms)`, or no timer (null) for 0, a negative delay, or one past
 * MAX_TIMER_MS.
 *
 * @param {() => void} callback
 * @param {number} ms
 * @returns {ReturnType<typeof setTimeout> | null}
 */
export const startTimer = (callback, ms) => (ms > 0 && ms <= MAX_TIMER_MS ? setTimeout(callback, ms) : null);

/**
 * `clearTimeout` that accepts the null of a timer never started.
 *
 * @param {ReturnType<typeof setTimeout> | null} timer
 */
export const stopTimer = (timer) => {
  if (timer !== null) clearTimeout(timer);
};

/** Twelve random characters: this client's prefix of its request ids. */
export function randomId() {
  if (typeof globalThis.crypto?.randomUUID === "function") return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  return Math.random().toString(36).slice(2, 14);
}

/**
 * The absolute `ws:`/`wss:` URL of `url`, resolved against the page (http becomes ws,
 * https becomes wss).
 *
 * @param {string | URL} url
 * @returns {string}
 */
export function resolveUrl(url) {
  const base = globalThis.location?.href;
  const parsed = base ? new URL(url, base) : new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  return parsed.href;
}
