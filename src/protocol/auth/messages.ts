import { message } from "../wire/writer.js"
import { Msg } from "../wire/messages.js"

/**
 * The data a publickey signature covers (RFC 4252 §7): the session id, then the
 * USERAUTH_REQUEST as sent with the "has signature" flag set.
 */
export function publicKeySignedData(
  sessionId: Uint8Array,
  username: string,
  service: string,
  algorithm: string,
  publicKey: Uint8Array
): Uint8Array {
  return message((w) =>
    w
      .string(sessionId)
      .byte(Msg.USERAUTH_REQUEST)
      .string(username)
      .string(service)
      .string("publickey")
      .bool(true)
      .string(algorithm)
      .string(publicKey)
  )
}

/** The data a hostbased signature covers (RFC 4252 §9). */
export function hostbasedSignedData(
  sessionId: Uint8Array,
  username: string,
  service: string,
  algorithm: string,
  hostKey: Uint8Array,
  hostname: string,
  localUsername: string
): Uint8Array {
  return message((w) =>
    w
      .string(sessionId)
      .byte(Msg.USERAUTH_REQUEST)
      .string(username)
      .string(service)
      .string("hostbased")
      .string(algorithm)
      .string(hostKey)
      .string(hostname)
      .string(localUsername)
  )
}

export const CONNECTION_SERVICE = "ssh-connection"
export const USERAUTH_SERVICE = "ssh-userauth"
