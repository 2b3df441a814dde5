/**
 * Why a key could not be read or used. The Effect layer maps these to `SshKeyError` reasons.
 */
export type KeyErrorReason =
  | "unsupported-format"
  | "unsupported-key-type"
  | "unsupported-cipher"
  | "passphrase-required"
  | "bad-passphrase"
  | "corrupt"

export class KeyError extends Error {
  override readonly name = "KeyError"
  constructor(
    readonly reason: KeyErrorReason,
    message: string
  ) {
    super(message)
  }
}

/**
 * Runs a decoder over untrusted bytes and turns whatever a malformed input makes it throw
 * (WireError, RangeError, a node:crypto error) into `KeyError("corrupt")`; KeyErrors pass through.
 */
export function decodeOrCorrupt<A>(what: string, decode: () => A): A {
  try {
    return decode()
  } catch (e) {
    if (e instanceof KeyError) throw e
    throw new KeyError("corrupt", `malformed ${what}: ${e instanceof Error ? e.message : String(e)}`)
  }
}
