import { DisconnectReason, ProtocolError, WireError } from "../wire/errors.js"
import { SshReader } from "../wire/reader.js"

/** A key exchange that cannot go on: bad peer values, a failed primitive, an unknown method. */
export function kexFailure(message: string): ProtocolError {
  return new ProtocolError("kex", message, DisconnectReason.KEY_EXCHANGE_FAILED)
}

export function unexpectedMessage(got: number | undefined, expected: string): ProtocolError {
  return new ProtocolError("protocol", `unexpected message ${got ?? "(empty)"} during key exchange, expected ${expected}`)
}

/**
 * Reads one kex message of the given number, consuming it exactly. A wrong number is a
 * protocol error; a malformed body is a failed key exchange that names the message.
 */
export function readMessage<T>(payload: Uint8Array, type: number, name: string, read: (r: SshReader) => T): T {
  if (payload[0] !== type) throw unexpectedMessage(payload[0], name)
  const r = new SshReader(payload, 1)
  try {
    const value = read(r)
    r.end()
    return value
  } catch (e) {
    if (e instanceof WireError) throw kexFailure(`malformed ${name}: ${e.message}`)
    throw e
  }
}
