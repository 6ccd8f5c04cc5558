// The router's built-in topic operations: presence, typing and receipts.

import { TempestWSError } from "./errors.js";
import { checkTopic } from "./history.js";

/** @import { AckData, Envelope, RequestOptions } from "../tempest-ws.js" */

/**
 * @template [T=unknown]
 * @typedef {(type: string, data?: unknown, options?: RequestOptions) => Promise<Envelope<T>>} Request
 */

/**
 * The users in `topic` (built-in `presence.get`); "invalid_reply" when the ack carries
 * no list of users.
 *
 * @param {Request} request the client's request()
 * @param {string} topic
 * @param {RequestOptions} options
 * @returns {Promise<string[]>}
 */
export function presence(request, topic, options) {
  return request("presence.get", { topic: checkTopic(topic, "presence") }, options).then((reply) => {
    const users = /** @type {{users?: unknown} | null | undefined} */ (reply.data)?.users;
    if (!Array.isArray(users) || !users.every((user) => typeof user === "string")) {
      throw new TempestWSError("presence.get ack carries no list of users", { code: "invalid_reply", envelope: reply });
    }
    return users;
  });
}

/**
 * Built-in `typing`: `typing` true while the user types, false when they stopped.
 *
 * @param {Request<AckData>} request the client's request()
 * @param {string} topic
 * @param {boolean} typing
 * @param {RequestOptions} options
 * @returns {Promise<Envelope<AckData>>}
 */
export function typing(request, topic, typing, options) {
  return request("typing", { topic: checkTopic(topic, "typing"), typing: Boolean(typing) }, options);
}

/**
 * Built-in `receipt`: `{message_id, status}` relayed to the topic's members.
 *
 * @param {Request<AckData>} request the client's request()
 * @param {string} topic
 * @param {string | number} messageId
 * @param {string} status
 * @param {RequestOptions} options
 * @returns {Promise<Envelope<AckData>>}
 */
export function receipt(request, topic, messageId, status, options) {
  return request("receipt", { topic: checkTopic(topic, "receipt"), message_id: messageId, status }, options);
}
