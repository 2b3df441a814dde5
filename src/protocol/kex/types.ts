/** Shapes shared by every key-exchange method (RFC 4253 §7-8 and the RFCs that add methods). */

export type HashName = "sha1" | "sha256" | "sha384" | "sha512"

/** What both sides put at the head of the exchange hash. */
export interface ExchangeInputs {
  /** Identification lines without CR LF. */
  readonly clientVersion: string
  readonly serverVersion: string
  /** KEXINIT payloads, starting with byte 20. */
  readonly clientKexInit: Uint8Array
  readonly serverKexInit: Uint8Array
}

export interface KexOutcome {
  readonly hash: HashName
  /** The shared secret already encoded for hashing: mpint for DH/ECDH/curve25519, string for the ML-KEM hybrid. */
  readonly K: Uint8Array
  /** The exchange hash. */
  readonly H: Uint8Array
}

export interface ClientKexResult extends KexOutcome {
  /** K_S, the server's host key blob, still to be verified by the caller. */
  readonly hostKey: Uint8Array
  /** The signature blob over H, as received. */
  readonly signature: Uint8Array
}

export interface ClientKex {
  /** Payloads to send as soon as the method is chosen. */
  start(): ReadonlyArray<Uint8Array>
  receive(payload: Uint8Array): { readonly send: ReadonlyArray<Uint8Array>; readonly result?: ClientKexResult }
}

export interface ServerHostKey {
  readonly blob: Uint8Array
  /** Returns the signature blob (string alg, string sig); the caller binds the negotiated algorithm. */
  sign(data: Uint8Array): Uint8Array
}

export interface ServerKex {
  receive(payload: Uint8Array): { readonly send: ReadonlyArray<Uint8Array>; readonly result?: KexOutcome }
}

export interface KexOptions {
  /** Source of every secret the exchange draws; node:crypto's by default. */
  readonly randomBytes?: (n: number) => Uint8Array
  /** Group sizes in bits a group-exchange client asks for (RFC 4419 §3). */
  readonly gex?: { readonly min: number; readonly preferred: number; readonly max: number }
}

export type RandomBytes = (n: number) => Uint8Array
