// Envelopes: the JSON frames both directions speak.

import { isTopic, positionOf } from "./history.js";

/** @import { Envelope, Position } from "../tempest-ws.js" */

/**
 * The frame of `{type, data, request_id}`.
 *
 * @param {string} type
 * @param {unknown} data
 * @param {string | null} [requestId]
 * @returns {string}
 */
export const encode = (type, data, requestId = null) => JSON.stringify({ type, data, request_id: requestId });

/**
 * The envelope a text frame carries, or the reason it carries none (a string: a binary
 * frame, invalid JSON, or JSON without a string `type`).
 *
 * @param {unknown} data a message event's `data`
 * @returns {Envelope | string}
 */
export function parseFrame(data) {
  if (typeof data !== "string") return "binary frame ignored";
  let envelope;
  try {
    envelope = JSON.parse(data);
  } catch {
    envelope = null;
  }
  if (!envelope || typeof envelope !== "object" || typeof envelope.type !== "string") {
    return "frame is not an envelope";
  }
  return envelope;
}

/**
 * The position an envelope is stamped with (a valid top-level `topic`, `offset` and
 * `epoch`), or null.
 *
 * @param {Envelope} envelope
 * @returns {{topic: string, position: Position} | null}
 */
export function stampOf(envelope) {
  const { topic } = envelope;
  const position = isTopic(topic) ? positionOf(envelope.offset, envelope.epoch) : null;
  return position && topic ? { topic, position } : null;
}
