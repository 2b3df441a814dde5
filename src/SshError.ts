import * as Schema from "effect/Schema"
import { ProtocolError } from "./protocol/wire/errors.js"

/**
 * The public errors. Each has a `reason` literal a program can match on and a message a
 * person can act on. Foreign failures are mapped to them in exactly one place each:
 * `fromProtocolError` here, `SftpError.fromStatus` for SFTP.
 */

/** The TCP connection could not be made or was not ready in time. */
export class SshConnectError extends Schema.TaggedError<SshConnectError>()("SshConnectError", {
  reason: Schema.Literal("socket", "timeout", "refused", "dns"),
  message: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {}

/** The transport failed: protocol violation, bad MAC, no common algorithm, host key rejected, or the peer disconnected. */
export class SshTransportError extends Schema.TaggedError<SshTransportError>()("SshTransportError", {
  reason: Schema.Literal(
    "protocol",
    "mac",
    "kex",
    "no-common-algorithm",
    "host-key-rejected",
    "packet-too-large",
    "disconnected",
    "connection-lost",
    "compression",
    "version",
    "timeout",
    "closed"
  ),
  message: Schema.String,
  /** The DISCONNECT reason code, when there was one. */
  code: Schema.optional(Schema.Number),
  details: Schema.optional(Schema.Unknown),
  cause: Schema.optional(Schema.Unknown)
}) {}

export interface AuthAttempt {
  readonly method: string
  readonly result: "rejected" | "partial" | "skipped" | "error"
  readonly detail?: string
}

/** Every method was tried and none succeeded. */
export class SshAuthError extends Schema.TaggedError<SshAuthError>()("SshAuthError", {
  reason: Schema.Literal("all-methods-failed", "no-methods", "cancelled", "timeout"),
  message: Schema.String,
  attempts: Schema.Array(
    Schema.Struct({
      method: Schema.String,
      result: Schema.Literal("rejected", "partial", "skipped", "error"),
      detail: Schema.optional(Schema.String)
    })
  ),
  /** The methods the server said could continue, at the end. */
  methodsLeft: Schema.Array(Schema.String),
  cause: Schema.optional(Schema.Unknown)
}) {}

/** A channel could not be opened, a request on it failed, or it closed under the user. */
export class SshChannelError extends Schema.TaggedError<SshChannelError>()("SshChannelError", {
  reason: Schema.Literal("open-failed", "request-failed", "closed", "connection-closed"),
  message: Schema.String,
  /** The CHANNEL_OPEN_FAILURE reason code, for open-failed. */
  code: Schema.optional(Schema.Number),
  cause: Schema.optional(Schema.Unknown)
}) {}

/** A key could not be read, decrypted or used. */
export class SshKeyError extends Schema.TaggedError<SshKeyError>()("SshKeyError", {
  reason: Schema.Literal(
    "unsupported-format",
    "unsupported-key-type",
    "unsupported-cipher",
    "passphrase-required",
    "bad-passphrase",
    "corrupt",
    "io"
  ),
  message: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * An SFTP operation failed: the server answered with a status other than OK, the session
 * ended under it, or (for transfers) the local side of the copy failed.
 */
export class SftpError extends Schema.TaggedError<SftpError>()("SftpError", {
  reason: Schema.Literal(
    "eof",
    "no-such-file",
    "permission-denied",
    "failure",
    "bad-message",
    "no-connection",
    "connection-lost",
    "op-unsupported",
    "local-io"
  ),
  /** The SSH_FX status code (for connection-lost and no-connection, the code a client reports locally). */
  status: Schema.Number,
  message: Schema.String,
  /** The remote path involved, when there is one. */
  path: Schema.optional(Schema.String),
  /** What was being done: "open", "read", "fastGet", ... */
  operation: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {
  /**
   * The one mapping from an SSH_FX status code to an SftpError. Codes beyond SFTP v3's
   * (sent by newer servers) count as "failure" and keep their number in `status`.
   */
  static fromStatus(
    status: number,
    serverMessage: string,
    operation: string,
    path?: string,
    cause?: unknown
  ): SftpError {
    const reason = sftpReasons[status] ?? "failure"
    const where = path !== undefined ? ` ${path}` : ""
    const detail = serverMessage !== "" ? serverMessage : sftpStatusText[reason]
    return new SftpError({
      reason,
      status,
      message: `sftp ${operation}${where}: ${detail}`,
      operation,
      ...(path !== undefined ? { path } : {}),
      ...(cause !== undefined ? { cause } : {})
    })
  }
}

const sftpReasons: Record<number, SftpError["reason"]> = {
  1: "eof",
  2: "no-such-file",
  3: "permission-denied",
  4: "failure",
  5: "bad-message",
  6: "no-connection",
  7: "connection-lost",
  8: "op-unsupported"
}

const sftpStatusText: Record<SftpError["reason"], string> = {
  eof: "end of file",
  "no-such-file": "no such file or directory",
  "permission-denied": "permission denied",
  failure: "the server reported a failure",
  "bad-message": "the server could not parse the request (bad message)",
  "no-connection": "not connected",
  "connection-lost": "the connection was lost before the server answered",
  "op-unsupported": "the server does not support this operation",
  "local-io": "local file error"
}

export type SshError = SshConnectError | SshTransportError | SshAuthError | SshChannelError | SshKeyError | SftpError

const disconnectNames: Record<number, string> = {
  1: "host not allowed to connect",
  2: "protocol error",
  3: "key exchange failed",
  5: "MAC error",
  6: "compression error",
  7: "service not available",
  8: "protocol version not supported",
  9: "host key not verifiable",
  10: "connection lost",
  11: "disconnected by application",
  12: "too many connections",
  13: "auth cancelled by user",
  14: "no more auth methods available",
  15: "illegal user name"
}

/** The one mapping from the core's ProtocolError to the public transport error. */
export function fromProtocolError(e: ProtocolError): SshTransportError {
  const code = e.kind === "disconnected" ? e.reason : undefined
  const reason = e.kind
  const message =
    e.kind === "disconnected" && code !== undefined
      ? `server disconnected: ${e.message} (${disconnectNames[code] ?? `code ${code}`})`
      : e.message
  return new SshTransportError({
    reason,
    message,
    ...(code !== undefined ? { code } : {}),
    ...(e.details !== undefined ? { details: e.details } : {}),
    cause: e
  })
}

export { ProtocolError }
