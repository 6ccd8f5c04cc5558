// The one error type of the client.

/** @import { Envelope, TempestWSErrorCode } from "../tempest-ws.js" */

/** The error type of every rejection and `error` event of this client. */
export class TempestWSError extends Error {
  /** @override @type {"TempestWSError"} */
  name = "TempestWSError";

  /**
   * @param {string} message human-readable explanation (never contains a token)
   * @param {{code?: string, closeCode?: number, envelope?: Envelope, cause?: unknown}} [info]
   */
  constructor(message, { code = "error", closeCode, envelope, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    /** @type {TempestWSErrorCode} */
    this.code = code;
    /** @type {number | undefined} */
    this.closeCode = closeCode;
    /** @type {Envelope | undefined} */
    this.envelope = envelope;
  }
}
