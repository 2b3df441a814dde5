/**
 * Errors raised inside the sans-IO core. They are plain classes (no Effect here);
 * the Effect layer maps them to the public tagged errors in one place.
 */

/** SSH_DISCONNECT reason codes (RFC 4253 §11.1). */
export const DisconnectReason = {
  HOST_NOT_ALLOWED_TO_CONNECT: 1,
  PROTOCOL_ERROR: 2,
  KEY_EXCHANGE_FAILED: 3,
  RESERVED: 4,
  MAC_ERROR: 5,
  COMPRESSION_ERROR: 6,
  SERVICE_NOT_AVAILABLE: 7,
  PROTOCOL_VERSION_NOT_SUPPORTED: 8,
  HOST_KEY_NOT_VERIFIABLE: 9,
  CONNECTION_LOST: 10,
  BY_APPLICATION: 11,
  TOO_MANY_CONNECTIONS: 12,
  AUTH_CANCELLED_BY_USER: 13,
  NO_MORE_AUTH_METHODS_AVAILABLE: 14,
  ILLEGAL_USER_NAME: 15
} as const
export type DisconnectReason = (typeof DisconnectReason)[keyof typeof DisconnectReason]

/** A read past the end of a message, or a value that violates the wire format. */
export class WireError extends Error {
  override readonly name = "WireError"
}

/**
 * A fatal protocol condition. `reason` is the DISCONNECT code sent to the peer;
 * `kind` classifies it for the public error types.
 */
export type ProtocolErrorKind =
  | "protocol"
  | "mac"
  | "kex"
  | "no-common-algorithm"
  | "host-key-rejected"
  | "packet-too-large"
  | "disconnected"
  | "connection-lost"
  | "compression"
  | "version"
  | "timeout"

export class ProtocolError extends Error {
  override readonly name = "ProtocolError"
  constructor(
    readonly kind: ProtocolErrorKind,
    message: string,
    readonly reason: DisconnectReason = DisconnectReason.PROTOCOL_ERROR,
    readonly details?: Readonly<Record<string, unknown>>
  ) {
    super(message)
  }
}
