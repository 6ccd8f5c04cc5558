// Topics and positions in a topic's history: what the client accepts and remembers.

/** @import { Position, RecoveryDetail } from "../tempest-ws.js" */

export const MAX_TOPIC_LENGTH = 256;
const MAX_EPOCH_LENGTH = 64; // as tempest_ws.history accepts them back

/**
 * @param {unknown} topic
 * @returns {topic is string}
 */
export const isTopic = (topic) => typeof topic === "string" && topic.length > 0 && topic.length <= MAX_TOPIC_LENGTH;

/**
 * `topic` itself, or a TypeError naming `method` for a topic that is not a string of
 * 1-256 characters.
 *
 * @param {unknown} topic
 * @param {string} method
 * @returns {string}
 */
export function checkTopic(topic, method) {
  if (!isTopic(topic)) {
    throw new TypeError(`TempestWS.${method}: topic must be a string of 1-${MAX_TOPIC_LENGTH} characters`);
  }
  return topic;
}

/**
 * `{offset, epoch}` when both are valid (an integer >= 0, a string of 1-64), else null.
 *
 * @param {unknown} offset
 * @param {unknown} epoch
 * @returns {Position | null}
 */
export function positionOf(offset, epoch) {
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) return null;
  if (typeof epoch !== "string" || !epoch || epoch.length > MAX_EPOCH_LENGTH) return null;
  return { offset, epoch };
}

/**
 * The valid entries of a `positions` option as a Map; malformed entries are skipped.
 *
 * @param {unknown} given
 * @returns {Map<string, Position>}
 */
export function seedPositions(given) {
  /** @type {Map<string, Position>} */
  const positions = new Map();
  if (given == null) return positions;
  if (typeof given !== "object" || Array.isArray(given)) {
    throw new TypeError("TempestWS: positions must be an object {topic: {offset, epoch}} or null");
  }
  for (const [topic, position] of Object.entries(given)) {
    const valid = isTopic(topic) && position && typeof position === "object" && positionOf(position.offset, position.epoch);
    if (valid) positions.set(topic, valid);
  }
  return positions;
}

/**
 * The detail of a `recovery` event from the envelope's `data`, or null when malformed.
 *
 * @param {unknown} data
 * @returns {RecoveryDetail | null}
 */
export function recoveryOf(data) {
  const fields = /** @type {Record<string, unknown>} */ (data ?? {});
  const { topic, recovered } = fields;
  const position = positionOf(fields.offset, fields.epoch);
  const replayed = fields.replayed ?? 0;
  if (!isTopic(topic) || typeof recovered !== "boolean" || !position) return null;
  if (typeof replayed !== "number" || !Number.isSafeInteger(replayed) || replayed < 0) return null;
  return { topic, recovered, replayed, offset: position.offset, epoch: position.epoch };
}
